"""audio stage of stylecraft."""

AUDIO_EXTENSIONS: tuple[str, ...] = (".flac", ".wav", ".ogg", ".opus", ".mp3", ".aiff", ".aif")
"""File extensions stylecraft reads as audio (all decoded by libsndfile), lower case."""
