"""Local launcher (no Docker): Redis if needed, the API and N workers as child processes."""
