"""The only code that holds a live connection."""
