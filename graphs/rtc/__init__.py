"""The WebRTC voice agent: server peers (aiortc) running the voice-chat conversation; see peer.py and media.py."""
