"""Bridges to external services, Ray-free: each implements a conversation service Protocol.

    asr_ws       WebSocketASR: a Recognizer over an ASR speaking our `/ws/transcribe/vad` protocol
    tts_ws       WebSocketTTS: a Synthesizer over a TTS speaking our `/ws/tts` protocol
    openai_chat  OpenAIChat: a ChatModel over any OpenAI-compatible `/chat/completions` (SSE)

A service that cannot be reached raises (or emits) an ApiError whose message
names the service and its URL (the client's own configuration), never internals.
"""
