"""The browser view in a real browser: Debian's headless Chromium driven by Playwright.

The page is opened against a real host with the web adapter and the scripted
model: a task is typed, its tokens and tool block appear, a steering line is
applied (it reaches the next model request), Stop cancels the run. A
screenshot lands in ``test-artifacts/``. Chromium comes from ``.ci/run``
(``apt-get install chromium``); when it is missing this test fails, it does
not skip.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright, expect

from bot.testing import Reply, ScriptedOllama
from tests.test_web_sse import AskBeforeRm, call, web_config, web_view

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def require_chromium() -> None:
    # Fail, never skip: CI installs Chromium, so its absence is a broken setup.
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), "
        "as .ci/run does"
    )
    ARTIFACTS.mkdir(exist_ok=True)


STEER = "use argparse, not click"


async def test_task_tokens_tool_block_steering_and_stop_in_chromium(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    require_chromium()
    # Step 1 streams and calls a tool; step 2 (a final answer) waits until the
    # browser's steering line is queued, so the loop must take it into step 3,
    # which streams and then hangs until Stop.
    scripted_ollama.script(
        Reply(
            content="Hello from the scripted model. Let me look at the files.",
            tool_calls=[call("bash", command="echo listing-the-workspace")],
            chunk_size=6,
            chunk_delay=0.02,
        )
    )
    steering_queued = asyncio.Event()
    later = [
        Reply(content="Adding the flag now."),
        Reply(content="Switching to argparse as you asked.", chunk_size=200, hang=True),
    ]

    async def respond(body: dict[str, Any]) -> Reply:
        if len(later) == 2:
            await asyncio.wait_for(steering_queued.wait(), 20)
        return later.pop(0)

    scripted_ollama.respond_with(respond)
    async with (
        web_view(web_config(tmp_path, scripted_ollama.url)) as view,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(view.url + "/")
            await expect(page.locator("#send")).to_have_text("Start")

            await page.fill("#input", "add a --verbose flag to cli.py")
            await page.click("#send")
            await expect(page.locator(".turn")).to_contain_text("add a --verbose flag")
            await expect(page.locator(".answer").first).to_contain_text(
                "Hello from the scripted model. Let me look at the files."
            )
            tool = page.locator("details.tool").first
            await expect(tool.locator("summary")).to_contain_text("bash: echo listing")
            await expect(tool).to_have_class("tool ok")
            await expect(page.locator(".step").first).to_contain_text("qwen3:4b (local)")
            await expect(page.locator("#sessions li").first).to_contain_text("add a --verbose")

            # While it runs, the box steers.
            await expect(page.locator("#send")).to_have_text("Steer")
            await page.fill("#input", STEER)
            await page.press("#input", "Enter")
            await expect(page.locator(".steering.queued")).to_contain_text(STEER)
            steering_queued.set()
            await expect(page.locator(".steering")).to_have_text(f"↳ steering applied: {STEER}")
            await expect(page.locator(".answer").last).to_contain_text(
                "Switching to argparse as you asked."
            )

            await expect(page.locator("#stop")).to_be_enabled()
            await page.click("#stop")
            await expect(page.locator(".notice").last).to_contain_text("Stopped by browser")
            await expect(page.locator(".footer")).to_contain_text("cancelled")
            await expect(page.locator("#stop")).to_be_disabled()

            await tool.locator("summary").click()
            await expect(tool.locator("pre.output")).to_contain_text("listing-the-workspace")
            await page.screenshot(path=str(ARTIFACTS / "web-browser.png"), full_page=True)
            assert errors == []
        finally:
            await browser.close()

    requests = scripted_ollama.chat_requests
    assert len(requests) == 3
    third_users = [m["content"] for m in requests[2]["messages"] if m["role"] == "user"]
    assert STEER in third_users[-1]
    assert not any(STEER in str(m.get("content")) for m in requests[1]["messages"])


async def test_the_page_asks_for_the_token_off_loopback(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    require_chromium()
    token = "browser-token-0123456789"
    scripted_ollama.script(Reply(content="hello through the token"))
    config = web_config(tmp_path, scripted_ollama.url, web={"host": "0.0.0.0"})
    config.secrets.web_token = token
    async with web_view(config, token=token) as view, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            await page.goto(view.url + "/")
            await expect(page.locator("#login")).to_be_visible()
            await page.fill("#token", "not-the-token")
            await page.press("#token", "Enter")
            await expect(page.locator("#loginErr")).to_have_text("wrong token")
            await page.fill("#token", token)
            await page.press("#token", "Enter")
            await expect(page.locator("#login")).to_be_hidden()
            await page.fill("#input", "greet me")
            await page.press("#input", "Enter")
            await expect(page.locator(".answer")).to_have_text("hello through the token")
            await expect(page.locator(".footer")).to_contain_text("1 step")
            # The token itself is in no cookie the page can read.
            assert token not in await page.evaluate("document.cookie")
        finally:
            await browser.close()


async def test_approval_buttons_and_read_only_watching(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    require_chromium()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "build.log").write_text("old")
    scripted_ollama.script(
        Reply(content="Cleaning up.", tool_calls=[call("bash", command="rm build.log")]),
        Reply(content="Removed build.log."),
        Reply(content="chat-side answer", delay=0.2),
    )
    config = web_config(tmp_path, scripted_ollama.url)
    async with (
        web_view(config, extra_plugins=(AskBeforeRm(),)) as view,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 700})
            await page.goto(view.url + "/")
            await page.fill("#input", "remove the build log")
            await page.click("#send")
            approval = page.locator(".approval")
            await expect(approval).to_contain_text("rm build.log")
            await page.screenshot(path=str(ARTIFACTS / "web-approval.png"))
            await approval.get_by_role("button", name="Allow", exact=True).click()
            await expect(approval).to_contain_text("allowed by browser")
            await expect(approval.get_by_role("button", name="Deny")).to_be_disabled()
            await expect(page.locator("details.tool")).to_have_class("tool ok")
            await expect(page.locator(".footer")).to_contain_text("2 steps")

            # A session started in chat shows up in the list and can only be watched.
            await view.recorder.say("a task from chat")
            chat_item = page.locator("#sessions li", has_text="a task from chat")
            await chat_item.click()
            await expect(page.locator("#input")).to_be_disabled()
            await expect(page.locator(".answer")).to_have_text("chat-side answer")
            await expect(page.locator("#title")).to_contain_text("read-only")
        finally:
            await browser.close()
    assert not (workspace / "build.log").exists()
