"""Live audio sessions, Ray-free: an event vocabulary, turn detection, the live-transcription policy.

    events       what sessions say (SpeechStarted ... Final, AgentText, AudioOut, Interrupted, Error)
    turns        TurnDetector: speech probabilities and levels per frame -> turn events
    transcriber  TurnTranscriber: turn events -> partials and finals (decode policy)
    live         LiveSession = VAD stream + TurnDetector + TurnTranscriber; AudioFeeder (bounded input)
"""
