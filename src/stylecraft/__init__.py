"""stylecraft: artist-style fine-tuning of MusicGen on raw audio, evaluated with Fréchet Audio Distance."""

__version__ = "0.1.0"
