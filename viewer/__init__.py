"""camviewer's display side: numpy in, pictures out. Never imports torch or `explain`."""
