"""Media I/O with PyAV: containers, probing, audio/video decoding, WAV and MP4 writing."""
