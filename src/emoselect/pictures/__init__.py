"""Picture sets: rating files of every supported format, pictures as RGB, the stimulus table (core, no torch)."""
