"""The real-time top floor: engines, file replay, microphone/camera devices, the server."""
