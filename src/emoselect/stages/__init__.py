"""One module per stage on a run folder (lock, check earlier stages, compute, write, draw, record), and sweeps."""
