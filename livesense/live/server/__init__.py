"""Live sessions over websockets: protocol, app, sessions, media paths, client, web page."""
