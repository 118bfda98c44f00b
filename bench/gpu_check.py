"""Print what threadwright sees of the GPU: NVML readings and Ollama's loaded models.

Run it on a machine with an NVIDIA GPU (and, optionally, Ollama) to exercise
the real NVML reader:

    python bench/gpu_check.py [--ollama http://127.0.0.1:11434] [--model NAME --need-mb N]

Without a GPU or a driver it says so and exits 0 (that is a normal state);
without Ollama it prints the NVML part and says why /api/ps could not be read.
With ``--model``, it also prints the swap plan for loading that model.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.gpu import MB, LoadedModel, NvmlReader, plan_swap
from bot.models.base import ModelError
from bot.models.ollama import OllamaClient


async def main(args: argparse.Namespace) -> int:
    reader = NvmlReader()
    snapshot = await asyncio.to_thread(reader.read)
    reader.close()
    print("NVML:", snapshot.describe())
    for gpu in snapshot.gpus:
        print(
            f"  GPU{gpu.index} {gpu.name}: total {gpu.total // MB} MiB, "
            f"used {gpu.used // MB} MiB, free {gpu.free // MB} MiB"
        )
    client = OllamaClient(args.ollama, connect_timeout=2.0, read_timeout=10.0)
    loaded: list[LoadedModel] = []
    try:
        entries = await client.ps()
        loaded = [LoadedModel.from_ps(e) for e in entries]
        print(f"Ollama {args.ollama} /api/ps: {len(loaded)} model(s) loaded")
        for entry, model in zip(entries, loaded, strict=True):
            print(
                f"  {model.name}: size {model.size // MB} MiB, in VRAM {model.size_vram // MB} "
                f"MiB, context {entry.get('context_length')}, expires {model.expires_at}"
            )
    except ModelError as exc:
        print(f"Ollama /api/ps not available: {exc.user_message}")
    finally:
        await client.close()
    if args.model:
        plan = plan_swap(
            args.model,
            args.need_mb * MB,
            loaded,
            snapshot,
            persona=args.persona,
            reserve=args.reserve_mb * MB,
        )
        print(f"swap plan for {args.model}: unload {plan.unload or 'nothing'} — {plan.reason}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ollama", default=os.environ.get("OLLAMA_HOST", "127.0.0.1:11434"))
    parser.add_argument("--model", help="print the swap plan for loading this model")
    parser.add_argument("--need-mb", type=int, default=8192, help="VRAM the model needs")
    parser.add_argument("--persona", default="jeffgreen311/eve-qwen3.5-4b-S0LF0RG3")
    parser.add_argument("--reserve-mb", type=int, default=512)
    raise SystemExit(asyncio.run(main(parser.parse_args())))
