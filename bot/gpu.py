"""GPU memory: what the cards hold (NVML), what Ollama has loaded (/api/ps), and swapping.

NVML is read through :class:`GpuReader` so tests run without a GPU:
:class:`NvmlReader` uses ``pynvml`` (from the ``nvidia-ml-py`` distribution,
imported lazily); :class:`StaticGpuReader` returns fixed readings. No GPU, no
driver or no ``pynvml`` is a normal state, reported in
:attr:`GpuSnapshot.reason`, never an exception.

Swapping instead of concurrent loading: the persona model
(``routing.local_model``) stays resident. Before a step needs another local
model that would not fit beside what is loaded, the others are unloaded
(``keep_alive: 0``) — the persona last, only when even that is not enough — and
the persona reloads on its next step. ``gpu.policy: off`` disables this.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.config import Config
    from bot.models.registry import ModelRegistry

log = logging.getLogger(__name__)

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    name: str
    total: int  # bytes
    used: int
    free: int


@dataclass(frozen=True, slots=True)
class GpuSnapshot:
    gpus: tuple[GpuInfo, ...] = ()
    reason: str = ""  # why there are no readings (no driver, no GPU, …)

    @property
    def available(self) -> bool:
        return bool(self.gpus)

    @property
    def free(self) -> int:
        return sum(g.free for g in self.gpus)

    @property
    def total(self) -> int:
        return sum(g.total for g in self.gpus)

    def describe(self) -> str:
        if not self.gpus:
            return f"no GPU readings ({self.reason or 'none found'})"
        return "; ".join(
            f"GPU{g.index} {g.name}: {g.used // MB} MiB used of {g.total // MB} MiB "
            f"({g.free // MB} MiB free)"
            for g in self.gpus
        )


class GpuReader(Protocol):
    def read(self) -> GpuSnapshot:
        """Current readings; blocking (call it in a thread from async code)."""
        ...


class StaticGpuReader:
    """Fixed readings: for tests, and for hosts where the operator knows better."""

    def __init__(self, gpus: list[GpuInfo] | None = None, reason: str = "") -> None:
        self.gpus = list(gpus or [])
        self.reason = reason or ("" if self.gpus else "no GPU")

    def read(self) -> GpuSnapshot:
        return GpuSnapshot(tuple(self.gpus), "" if self.gpus else self.reason)


class NvmlReader:
    """Readings from the NVIDIA driver through NVML."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml: Any = None
        self._failure: str | None = None

    def _init(self) -> Any:
        if self._nvml is not None or self._failure is not None:
            return self._nvml
        try:
            import pynvml
        except ImportError:
            self._failure = "nvidia-ml-py is not installed"
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self._failure = f"NVML unavailable: {exc}"
            return None
        self._nvml = pynvml
        return pynvml

    def read(self) -> GpuSnapshot:
        with self._lock:
            nvml = self._init()
            if nvml is None:
                return GpuSnapshot((), self._failure or "NVML unavailable")
            try:
                gpus = []
                for index in range(nvml.nvmlDeviceGetCount()):
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                    name = nvml.nvmlDeviceGetName(handle)
                    if isinstance(name, bytes):
                        name = name.decode(errors="replace")
                    gpus.append(
                        GpuInfo(
                            index, str(name), int(memory.total), int(memory.used), int(memory.free)
                        )
                    )
            except nvml.NVMLError as exc:
                return GpuSnapshot((), f"NVML read failed: {exc}")
            return GpuSnapshot(tuple(gpus), "" if gpus else "the driver reports no GPU")

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                try:
                    self._nvml.nvmlShutdown()
                except self._nvml.NVMLError:
                    log.debug("nvmlShutdown failed", exc_info=True)
                self._nvml = None


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One entry of Ollama's ``/api/ps``."""

    name: str
    size: int
    size_vram: int
    expires_at: Any = None

    @classmethod
    def from_ps(cls, entry: dict[str, Any]) -> LoadedModel:
        return cls(
            str(entry.get("name") or entry.get("model") or ""),
            int(entry.get("size") or 0),
            int(entry.get("size_vram") or 0),
            entry.get("expires_at"),
        )


@dataclass(frozen=True, slots=True)
class SwapPlan:
    unload: list[str] = field(default_factory=list)
    reason: str = ""


def _same(a: str, b: str) -> bool:
    return a == b or a == f"{b}:latest" or b == f"{a}:latest"


def plan_swap(
    target: str,
    need: int,
    loaded: list[LoadedModel],
    snapshot: GpuSnapshot,
    *,
    persona: str,
    reserve: int = 0,
) -> SwapPlan:
    """Which loaded models to unload so ``target`` (``need`` bytes of VRAM) fits.

    Nothing when the target is loaded, when there are no GPU readings (Ollama
    then runs on the CPU and RAM is not ours to manage), or when it fits.
    Others go first, largest first; the persona only if still needed.
    """
    if any(_same(m.name, target) for m in loaded):
        return SwapPlan(reason=f"{target} is already loaded")
    if not snapshot.available:
        return SwapPlan(reason=snapshot.describe())
    free = snapshot.free - reserve
    if need <= free:
        return SwapPlan(reason=f"{target} fits ({need // MB} MiB needed, {free // MB} MiB free)")
    others = sorted(
        (m for m in loaded if not _same(m.name, persona)), key=lambda m: m.size_vram, reverse=True
    )
    residents = [m for m in loaded if _same(m.name, persona)]
    unload: list[str] = []
    for model in [*others, *residents]:
        if need <= free:
            break
        unload.append(model.name)
        free += model.size_vram
    verdict = "fits after unloading" if need <= free else "still does not fit after unloading"
    return SwapPlan(unload, f"{target} needs {need // MB} MiB: {verdict} {', '.join(unload)}")


class ModelSwapper:
    """Makes room on the GPU before a step runs a local model that is not loaded."""

    def __init__(
        self, config: Config, models: ModelRegistry, reader: GpuReader | None = None
    ) -> None:
        self.config = config
        self.models = models
        self.reader: GpuReader = reader or NvmlReader()
        self.sizes: dict[str, int] = {
            name: mb * MB for name, mb in config.gpu.model_sizes_mb.items()
        }
        self.last_plan: SwapPlan | None = None
        self.last_snapshot: GpuSnapshot | None = None
        self.last_loaded: list[LoadedModel] = []
        self._last_model: str | None = None
        self._lock = asyncio.Lock()

    async def snapshot(self) -> GpuSnapshot:
        self.last_snapshot = await asyncio.to_thread(self.reader.read)
        return self.last_snapshot

    async def loaded(self, model: str) -> list[LoadedModel]:
        """What the endpoint serving ``model`` has loaded (empty when it cannot say)."""
        client = self.models.client_for(model)
        ps = getattr(client, "ps", None)
        if ps is None:
            return []
        entries = [LoadedModel.from_ps(e) for e in await ps()]
        self.last_loaded = entries
        for entry in entries:
            if entry.size_vram:
                self.sizes[entry.name] = entry.size_vram
        return entries

    def need(self, model: str, loaded: list[LoadedModel]) -> int:
        """Expected VRAM of ``model``: configured, else seen before, else as big as the
        biggest model loaded now (a guess that errs towards making room)."""
        for name, size in self.sizes.items():
            if _same(name, model):
                return size
        return max((m.size_vram for m in loaded), default=0)

    def status_line(self) -> str | None:
        """For /status: the last readings taken before a model change (None: none yet)."""
        if self.last_snapshot is None:
            return None
        line = f"GPU: {self.last_snapshot.describe()}"
        if self.last_loaded:
            models = ", ".join(
                f"{m.name} ({m.size_vram // MB} MiB in VRAM)" for m in self.last_loaded
            )
            line += f"; loaded: {models}"
        return line

    async def prepare(self, model: str) -> SwapPlan | None:
        """Before a step on ``model``: unload what must go. Never raises."""
        if self.config.gpu.policy == "off" or self.models.is_cloud(model):
            return None
        if self._last_model is not None and _same(self._last_model, model):
            return None  # the model of the last step is still the one in use
        async with self._lock:
            try:
                plan = await self._prepare(model)
            except Exception as exc:  # GPU care is best effort: never fail a step for it
                log.warning("could not prepare the GPU for %s: %s", model, exc)
                return None
            self._last_model = model
            self.last_plan = plan
            return plan

    async def _prepare(self, model: str) -> SwapPlan:
        snapshot = await self.snapshot()
        if not snapshot.available:
            # Ollama runs on the CPU here: RAM is the operating system's to manage.
            return SwapPlan(reason=snapshot.describe())
        loaded = await self.loaded(model)
        if any(_same(m.name, model) for m in loaded):
            return SwapPlan(reason=f"{model} is already loaded")
        plan = plan_swap(
            model,
            self.need(model, loaded),
            loaded,
            snapshot,
            persona=self.config.routing.local_model,
            reserve=self.config.gpu.reserve_mb * MB,
        )
        unload = getattr(self.models.client_for(model), "unload", None)
        if plan.unload and unload is not None:
            for name in plan.unload:
                log.info("unloading %s to make room for %s", name, model)
                await unload(name)
        return plan
