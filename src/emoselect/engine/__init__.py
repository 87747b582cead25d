"""The torch engine: network sources and families, probing, forward passes, responses, heads, manipulations."""
