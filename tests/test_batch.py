"""Batch transcription (batch/): input listing, Parquet rows and resume (Ray-free), and one real run of
`python -m batch.transcribe` on recorded speech with a broken file among them (own Ray instance)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq

from batch.files import PartWriter, done_paths, list_inputs, to_row
from batch.transcribe import load_plan
from speechcore.settings import REPO_ROOT
from speechcore.textmetrics import wer
from speechcore.pipelines.diarization import Turn, diarization_error_rate
from tests.speech import CALL, call_turns, cards, librivox


def test_inputs_from_folder_glob_and_list(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.wav", "sub/b.mp3", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert list_inputs(str(tmp_path)) == [str(tmp_path / "a.wav"), str(tmp_path / "sub" / "b.mp3")]
    assert list_inputs(str(tmp_path / "**" / "*.mp3")) == [str(tmp_path / "sub" / "b.mp3")]
    listing = tmp_path / "list.txt"
    listing.write_text("# inputs\na.wav\n\ns3://bucket/c.flac\n")
    assert list_inputs(str(listing)) == [str(tmp_path / "a.wav"), "s3://bucket/c.flac"]


def test_rows_are_typed_and_resume_skips_written_paths(tmp_path):
    out = tmp_path / "out.parquet"
    writer = PartWriter(out, rows_per_part=1)
    seg = {"id": 0, "start": 0.1, "end": 1.0, "text": "hi", "avg_logprob": -0.2, "no_speech_prob": 0.0,
           "speaker": None, "words": [{"word": "hi", "start": 0.1, "end": 0.4, "probability": 0.9}]}
    writer.add(to_row({"path": "/a.wav", "duration": 1.5, "language": "en", "text": "hi",
                       "segments_json": __import__("json").dumps([seg]), "model": "m", "error": ""}))
    writer.add(to_row({"path": "/bad.wav", "duration": 0.0, "error": "invalid_audio_format: not audio"}))
    writer.flush()
    assert done_paths(out) == {"/a.wav", "/bad.wav"}
    rows = {r["path"]: r for r in pq.read_table(out).to_pylist()}
    assert rows["/a.wav"]["segments"][0]["words"][0] == {"word": "hi", "start": 0.1, "end": 0.4, "probability": 0.9}
    assert rows["/a.wav"]["error"] is None and rows["/bad.wav"]["text"] is None
    assert rows["/bad.wav"]["segments"] == [] and rows["/bad.wav"]["error"].startswith("invalid_audio_format")


def test_plan_takes_backends_and_accelerator_share_from_the_profile():
    cpu = load_plan(REPO_ROOT / "configs" / "serve_cpu.yaml", "whisper-tiny.en")
    assert cpu.asr["model"] == "whisper-tiny.en" and cpu.asr_resources == {"num_cpus": 1.0}
    assert cpu.vad["backend"] == "silero-onnx"
    assert cpu.embedding["backend"] == "eres2net-onnx" and cpu.embedding_resources == {"num_cpus": 1.0}
    gpu = load_plan(REPO_ROOT / "serve_config.yaml", None)
    assert gpu.asr_resources["num_gpus"] > 0 and gpu.embedding_resources["num_gpus"] > 0


def _run(inputs, output, *extra):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "batch.transcribe", str(inputs), str(output), "--model",
                           "whisper-tiny.en", "--language", "en", "--quiet", *extra],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_batch_run_transcribes_recordings_keeps_going_past_a_bad_file_and_resumes(tmp_path):
    clips = dict(list(librivox().items())[:2])
    folder = tmp_path / "in"
    folder.mkdir()
    for p in clips:
        shutil.copy(p, folder / p.name)
    (folder / "broken.wav").write_bytes(b"RIFF this is not audio")
    out = tmp_path / "out.parquet"
    first = _run(folder, out)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = {os.path.basename(r["path"]): r for r in pq.read_table(out).to_pylist()}
    assert set(rows) == {p.name for p in clips} | {"broken.wav"}
    assert rows["broken.wav"]["error"].startswith("invalid_audio_format") and rows["broken.wav"]["text"] is None
    errors = sum(wer(ref, rows[p.name]["text"]) * len(ref.split()) for p, ref in clips.items())
    assert errors / sum(len(ref.split()) for ref in clips.values()) < 0.15, [rows[p.name]["text"] for p in clips]
    for p in clips:
        row = rows[p.name]
        assert row["error"] is None and row["language"] == "en"
        words = [w for s in row["segments"] for w in s["words"]]
        assert abs(row["duration"] - 7.1) < 5 and words and all(w["start"] <= w["end"] for w in words)
        assert [s["id"] for s in row["segments"]] == list(range(len(row["segments"])))

    card, card_ref = next(iter(cards().items()))
    shutil.copy(card, folder / card.name)
    second = _run(folder, out)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "3 already in" in second.stderr and "1 to do" in second.stderr
    table = pq.read_table(out).to_pylist()
    assert len(table) == 4 and wer(card_ref, next(r for r in table if r["path"].endswith(card.name))["text"]) < 0.5


def test_batch_diarize_labels_the_two_speakers_of_a_call(tmp_path):
    """`--diarize` on the pyannote call (two speakers, reference RTTM) beside a broken file: segments
    carry speakers that follow the reference turns, `speakers` lists them, the bad file has its error."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(CALL, folder / "call.wav")
    (folder / "broken.wav").write_bytes(b"RIFF this is not audio")
    run = _run(folder, tmp_path / "out.parquet", "--diarize")
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {os.path.basename(r["path"]): r for r in pq.read_table(tmp_path / "out.parquet").to_pylist()}
    assert rows["broken.wav"]["error"].startswith("invalid_audio_format") and rows["broken.wav"]["speakers"] is None
    call = rows["call.wav"]
    assert call["error"] is None and call["speakers"] == ["SPEAKER_00", "SPEAKER_01"], call["speakers"]
    assert all(s["speaker"] in call["speakers"] for s in call["segments"])
    hypothesis = [Turn(s["speaker"], s["start"], s["end"]) for s in call["segments"]]
    reference = [Turn(*t) for t in call_turns()]
    assert diarization_error_rate(reference, hypothesis) < 0.35
