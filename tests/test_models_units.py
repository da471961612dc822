"""Moonshine and ERes2Net without Ray: the install-time conversions, batching by length, real decodes."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from speechcore.audio import decode_audio
from speechcore.backends.moonshine_asr import MoonshineASR, length_batches
from speechcore.schemas import ASRRequest, TranscribeOptions
from speechcore.settings import get_settings
from speechcore.spec import BackendSpec
from speechcore.textmetrics import wer
from tests.speech import CALL, call_turns, librivox

MODELS = get_settings().models_dir


def test_length_batches_group_similar_lengths_and_respect_the_size():
    lengths = [100, 1000, 110, 1400, 120, 3000, 105]
    batches = length_batches(lengths, max_batch=2, ratio=1.5)
    assert sorted(itertools.chain(*batches)) == list(range(len(lengths)))
    assert all(len(b) <= 2 for b in batches)
    for b in batches:
        assert max(lengths[i] for i in b) <= 1.5 * min(lengths[i] for i in b)
    assert [lengths[i] for i in batches[0]] == [100, 105]
    padded = length_batches(lengths, max_batch=8, ratio=None)
    assert padded == [sorted(range(len(lengths)), key=lambda i: lengths[i])]   # one batch, padded to its longest


def test_folding_replaces_dequantisation_chains_by_their_fp32_value():
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from scripts.convert_moonshine import fold_constants

    q = np.array([[-3, 7], [127, -128]], np.int8)
    nodes = [helper.make_node("Cast", ["q"], ["qf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["qf", "scale"], ["w0"]),
             helper.make_node("Add", ["w0", "bias"], ["w"]),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [numpy_helper.from_array(q, "q"), numpy_helper.from_array(np.float32(0.5), "scale"),
                               numpy_helper.from_array(np.float32(0.25), "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    assert fold_constants(model) == 3
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    (w,) = [numpy_helper.to_array(i) for i in model.graph.initializer]
    assert w.dtype == np.float32 and np.allclose(w, q.astype(np.float32) * 0.5 + 0.25)
    x = np.array([[1.0, 2.0]], np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.allclose(sess.run(None, {"x": x})[0], x @ w)


@pytest.fixture(scope="module")
def moonshine() -> MoonshineASR:
    return MoonshineASR(BackendSpec(backend="moonshine-onnx", model="moonshine-base"))


def test_moonshine_is_plain_fp32_onnx():
    onnx = pytest.importorskip("onnx")
    for part in ("encoder_model", "decoder_model_merged"):
        model = onnx.load(str(MODELS / "moonshine-base" / f"{part}.onnx"), load_external_data=False)
        types = {i.data_type for i in model.graph.initializer}
        assert onnx.TensorProto.INT8 not in types and onnx.TensorProto.FLOAT in types


def test_moonshine_transcribes_librivox_batched_by_length_as_alone(moonshine):
    clips = {p: decode_audio(p.read_bytes()) for p in librivox()}
    requests = [ASRRequest(a, [(0.0, len(a) / 16000)], TranscribeOptions()) for a in clips.values()]
    batched = moonshine.transcribe_batch(requests)
    for (path, ref), t in zip(librivox().items(), batched):
        assert wer(ref, t.text) <= 0.1, (path.name, t.text)
        assert t.language == "en" and t.model == "moonshine-base" and len(t.segments) == 1
    alone = moonshine.transcribe_batch(requests[:1])
    assert alone[0].text == batched[0].text


def test_moonshine_maps_clips_back_to_their_requests_and_times(moonshine):
    call = decode_audio(CALL.read_bytes())
    turns = [(s, e) for _, s, e in call_turns() if e - s >= 1.0][:4]
    (t,) = moonshine.transcribe_batch([ASRRequest(call, turns, TranscribeOptions(language="en"))])
    assert [(s.start, s.end) for s in t.segments] == [(round(s, 3), round(e, 3)) for s, e in turns
                                                      ][:len(t.segments)]
    assert len(t.segments) >= 3 and all(s.words is None for s in t.segments)
    info = moonshine.info()
    assert info.languages == ["en"] and info.extra["word_timestamps"] is False and not info.extra["translate"]


def test_eres2net_onnx_separates_real_speakers():
    from speechcore.backends.eres2net_embedding import ERes2NetEmbedding, fbank

    emb = ERes2NetEmbedding(BackendSpec(backend="eres2net-onnx", model="eres2net"))
    call = decode_audio(CALL.read_bytes())
    turns = [(spk, call[int(s * 16000):int(e * 16000)]) for spk, s, e in call_turns() if e - s >= 2.0]
    vectors = emb.embed_batch([a for _, a in turns])
    assert all(v.shape == (192,) and abs(float(np.linalg.norm(v)) - 1) < 1e-4 for v in vectors)
    same = [float(a @ b) for (s1, _), (s2, _), a, b in _pairs(turns, vectors) if s1 == s2]
    other = [float(a @ b) for (s1, _), (s2, _), a, b in _pairs(turns, vectors) if s1 != s2]
    assert same and other and np.mean(same) > np.mean(other) + 0.2, (np.mean(same), np.mean(other))
    feats = fbank(turns[0][1])
    assert feats.shape[1] == 80 and np.allclose(feats.mean(axis=0), 0, atol=1e-3)


def _pairs(items: list, vectors: list) -> list:
    return [(items[i], items[j], vectors[i], vectors[j]) for i, j in itertools.combinations(range(len(items)), 2)]


def test_eres2net_export_matches_the_checkpoint():
    torch = pytest.importorskip("torch")
    from scripts.export_eres2net import load_torch_model
    from speechcore.backends.eres2net_embedding import EResNetOnnx, fbank

    clip = decode_audio(next(iter(librivox())).read_bytes())
    feats = fbank(clip)[None]
    model = load_torch_model(MODELS / "eres2net")
    with torch.no_grad():
        want = model(torch.from_numpy(feats)).numpy()
    got = EResNetOnnx(MODELS / "eres2net" / "eres2net.onnx").run(feats)
    assert np.abs(got - want).max() < 1e-4


def test_reembed_adds_the_new_models_samples_from_stored_audio_once(tmp_path):
    from scripts.reembed import reembed
    from speechcore.backends.eres2net_embedding import ERes2NetEmbedding
    from speechcore.speakers.store import VoiceprintStore

    store = VoiceprintStore(tmp_path)
    clips = [decode_audio(p.read_bytes()) for p in librivox()]
    old = np.ones(256, np.float32) / 16
    speaker, _ = store.add_sample(family="reachy", model="resemblyzer", embedding=old, audio=clips[0], name="reader")
    store.add_sample(family="reachy", model="resemblyzer", embedding=old, audio=clips[1], name="reader")
    store.add_sample(family="voice", model="resemblyzer", embedding=old, audio=None, name="no audio")
    embedder = ERes2NetEmbedding(BackendSpec(backend="eres2net-onnx", model="eres2net"))
    assert reembed(store, embedder, "eres2net") == (2, 1)
    new = store.get(speaker.id, "eres2net")
    assert new is not None and len(new.embeddings) == 2 and new.embeddings[0].shape == (192,)
    assert float(new.embeddings[0] @ embedder.embed_batch([clips[0]])[0]) > 0.999   # (stored as 16-bit wav)
    assert len(store.get(speaker.id, "resemblyzer").embeddings) == 2   # the old model's samples stay
    assert reembed(store, embedder, "eres2net") == (0, 1)               # idempotent
