"""GPU memory: readers, swap plans, and swapping against the scripted Ollama's /api/ps."""

from __future__ import annotations

from pathlib import Path

import httpx

from bot.gpu import (
    MB,
    GpuInfo,
    GpuSnapshot,
    LoadedModel,
    ModelSwapper,
    NvmlReader,
    StaticGpuReader,
    plan_swap,
)
from bot.testing import Reply, ScriptedOllama
from bot.testing.harness import make_test_config, running_host

GB = 1024 * MB
PERSONA = "persona:4b"
OTHER = "coder:7b"
BIG = "fallback:14b"


def one_gpu(total_gb: float, used_gb: float) -> StaticGpuReader:
    total, used = int(total_gb * GB), int(used_gb * GB)
    return StaticGpuReader([GpuInfo(0, "Test GPU", total, used, total - used)])


def test_no_gpu_is_a_normal_state() -> None:
    snapshot = StaticGpuReader().read()
    assert not snapshot.available and snapshot.free == 0
    assert snapshot.describe() == "no GPU readings (no GPU)"
    # The real reader on a machine without a driver (or without a GPU) reports, never raises.
    reader = NvmlReader()
    real = reader.read()
    reader.close()
    if not real.available:
        assert real.reason
    else:
        assert all(g.total >= g.used for g in real.gpus)


def test_one_gpu_readings() -> None:
    snapshot = one_gpu(24, 6).read()
    assert snapshot.available and snapshot.total == 24 * GB and snapshot.free == 18 * GB
    assert "6144 MiB used of 24576 MiB (18432 MiB free)" in snapshot.describe()


def loaded(*models: tuple[str, float]) -> list[LoadedModel]:
    return [LoadedModel(name, int(gb * GB), int(gb * GB)) for name, gb in models]


def test_plans() -> None:
    gpu = one_gpu(16, 12).read()  # persona 4 GB + other 8 GB loaded: 4 GB free
    both = loaded((PERSONA, 4), (OTHER, 8))
    # Already loaded, or it fits: nothing to do.
    assert plan_swap(OTHER, 8 * GB, both, gpu, persona=PERSONA).unload == []
    assert plan_swap("tiny:1b", 2 * GB, both, gpu, persona=PERSONA).unload == []
    # 9 GB does not fit in 4 GB free: the other model goes, the persona stays resident.
    plan = plan_swap(BIG, 9 * GB, both, gpu, persona=PERSONA)
    assert plan.unload == [OTHER] and "fits after unloading" in plan.reason
    # 14 GB needs the persona's room too: it goes last and reloads later.
    assert plan_swap(BIG, 14 * GB, both, gpu, persona=PERSONA).unload == [OTHER, PERSONA]
    # The reserve counts against free memory.
    assert plan_swap("m:3b", 3 * GB, both, gpu, persona=PERSONA, reserve=2 * GB).unload == [OTHER]
    # Without GPU readings nothing is unloaded: Ollama runs on the CPU.
    assert plan_swap(BIG, 9 * GB, both, GpuSnapshot((), "no GPU"), persona=PERSONA).unload == []
    # ":latest" is the same model.
    assert plan_swap("persona", 4 * GB, both, gpu, persona=PERSONA + ":latest").unload == []


async def preload(server: ScriptedOllama, *models: str) -> None:
    """What earlier steps left loaded: Ollama's load request (empty prompt, a keep_alive)."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        for model in models:
            response = await http.post("/api/generate", json={"model": model, "keep_alive": "30m"})
            response.raise_for_status()


def unload_requests(server: ScriptedOllama) -> list[str]:
    return [
        str(r.body["model"])
        for r in server.requests
        if r.path in ("/api/generate", "/api/chat")
        and isinstance(r.body, dict)
        and r.body.get("keep_alive") == 0
    ]


async def test_swapper_unloads_others_but_keeps_the_persona(tmp_path: Path) -> None:
    sizes = {PERSONA: (4 * GB, 4 * GB), OTHER: (8 * GB, 8 * GB), BIG: (9 * GB, 9 * GB)}
    async with ScriptedOllama(model_sizes=sizes) as server:
        server.script(Reply(content="a"), Reply(content="b"))
        config = make_test_config(
            tmp_path / "ws", server.url, routing={"local_model": PERSONA, "fallback_model": BIG}
        )
        config.gpu.model_sizes_mb = {BIG: 9 * 1024}
        async with running_host(config) as (host, _adapter):
            await preload(server, PERSONA, OTHER)
            swapper = ModelSwapper(config, host.runtime.models, one_gpu(16, 12))
            assert await swapper.prepare("qwen3-coder:480b-cloud") is None  # not ours to load
            plan = await swapper.prepare(BIG)
            assert plan is not None and plan.unload == [OTHER]
            assert unload_requests(server) == [OTHER]
            assert sorted(server.loaded_models) == [PERSONA]
            # The same model again: no second look at /api/ps.
            before = len(server.requests)
            assert await swapper.prepare(BIG) is None
            assert len(server.requests) == before
            # The persona, loaded, needs nothing.
            plan = await swapper.prepare(PERSONA)
            assert plan is not None and plan.unload == [] and "already loaded" in plan.reason
            # No GPU: nothing unloaded, no error.
            quiet = ModelSwapper(config, host.runtime.models, StaticGpuReader())
            plan = await quiet.prepare(OTHER)
            assert plan is not None and plan.unload == [] and "no GPU" in plan.reason
            assert quiet.status_line() == "GPU: no GPU readings (no GPU)"
        line = swapper.status_line() or ""
        assert line.startswith("GPU: GPU0 Test GPU: 12288 MiB used of 16384 MiB")
        assert f"loaded: {PERSONA} (4096 MiB in VRAM)" in line


async def test_swap_runs_before_a_fallback_step(tmp_path: Path) -> None:
    sizes = {PERSONA: (4 * GB, 4 * GB), OTHER: (8 * GB, 8 * GB), BIG: (9 * GB, 9 * GB)}
    workspace = tmp_path / "ws"
    workspace.mkdir()
    async with ScriptedOllama(model_sizes=sizes) as server:
        cloud = "qwen3-coder:480b-cloud"
        server.script_for(cloud, Reply(status=503))
        server.script_for(BIG, Reply(content="answered by the fallback"))
        config = make_test_config(
            workspace,
            server.url,
            routing={"local_model": PERSONA, "fallback_model": BIG, "cloud_model": cloud},
        )

        def fake_gpu(host: object) -> None:
            host.runtime.router.gpu.reader = one_gpu(16, 12)  # type: ignore[attr-defined]

        async with running_host(config, on_host=fake_gpu) as (_host, adapter):
            await preload(server, PERSONA, OTHER)
            await adapter.say("--cloud go")
            turn = await adapter.wait_turn()
        assert "answered by the fallback" in turn.text
        assert unload_requests(server) == [OTHER]
        assert PERSONA in server.loaded_models and OTHER not in server.loaded_models
