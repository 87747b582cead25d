"""Foundation: problems and errors, option declarations, atomic files and locks, manifests, random streams."""
