"""Admission control end to end: a flooded bulk lane refuses at once (429 + Retry-After, in the
family's error shape) while what it admitted completes correctly.

The bound is lowered on one ASR deployment through its `user_config` (Serve applies it with
`reconfigure`, no restart) and put back afterwards, so the rest of the suite sees the profile.
"""
from __future__ import annotations

import asyncio
import copy
import time

import httpx
import pytest

from graphs import launch
from speechcore.textmetrics import wer
from tests.speech import librivox

MODEL, DEPLOYMENT = "whisper-base", "asr_whisper_base"   # the model whose WER on these clips the suite knows


def asr_deployment(config: dict) -> dict:
    (app,) = config["applications"]
    return next(d for d in app["deployments"] if d["name"] == DEPLOYMENT)


def with_bulk_bound(config: dict, requests: int) -> dict:
    config = copy.deepcopy(config)
    dep = asr_deployment(config)
    dep["user_config"] = {**dep["user_config"], "max_requests": {"interactive": None, "bulk": requests}}
    return config


def apply(config: dict, handles, requests: int) -> None:
    launch.deploy(config)
    deadline = time.time() + 120
    while handles(DEPLOYMENT).batch_config.remote().result()["max_requests"]["bulk"] != requests:
        assert time.time() < deadline, "the new user_config was not applied"
        time.sleep(0.5)


@pytest.fixture
def small_bulk_lane(serve_config, base_url, handles):
    apply(with_bulk_bound(serve_config, 2), handles, 2)
    yield
    apply(serve_config, handles, asr_deployment(serve_config)["user_config"]["max_requests"]["bulk"])


def test_a_flooded_bulk_lane_refuses_with_retry_after_and_completes_what_it_admitted(base_url, small_bulk_lane):
    clips = list(librivox().items())[:3] * 3

    async def flood():
        async with httpx.AsyncClient(timeout=300) as client:
            return await asyncio.gather(*[client.post(f"{base_url}/v1/audio/transcriptions",
                                                      files={"file": (p.name, p.read_bytes())},
                                                      data={"model": MODEL}) for p, _ in clips])

    answers = list(zip(clips, asyncio.run(flood())))
    admitted = [(ref, r) for (_, ref), r in answers if r.status_code == 200]
    refused = [r for _, r in answers if r.status_code != 200]
    assert admitted and refused, [r.status_code for _, r in answers]
    for r in refused:
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, r.text
        error = r.json()["error"]
        assert error["code"] == "overloaded" and error["type"] == "requests" and "retry in" in error["message"]
    for ref, r in admitted:
        assert wer(ref, r.json()["text"]) <= 0.2, r.text
