"""Drive the demo in headless Chromium (selenium + chromedriver) and save a screenshot.

    python -m accel.app.screenshot --out docs/images/demo.png          # built-in sd-digits if trained
    python -m accel.app.screenshot --tiny --out /tmp/demo.png          # a tiny random pipeline

Uses the system's ``chromium`` and ``chromedriver`` (Debian: ``apt-get install chromium
chromium-driver``); nothing is downloaded. Used by ``tests/test_app_browser.py`` and for the docs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--disable-dev-shm-usage",
)


def find_browser() -> tuple[str, str] | None:
    """``(chromium, chromedriver)`` paths, or None."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )
    return (chromium, driver) if chromium and driver else None


def ensure_browser(install: bool = True) -> tuple[str, str]:
    """The browser paths; installs Debian's packages when missing and allowed. Raises RuntimeError(reason)."""
    found = find_browser()
    if found:
        return found
    if not install:
        raise RuntimeError("chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)")
    if not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise RuntimeError(
            "chromium/chromedriver are missing and cannot be installed here (needs root and apt-get): "
            "run `apt-get install -y chromium chromium-driver`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if result.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
        result = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
    found = find_browser()
    if not found:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"installing chromium failed: {tail[0]}")
    return found


def start_driver(chromium: str, chromedriver: str, width: int = 1400, height: int = 1800) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_generation(
    driver: Any,
    url: str,
    prompt: str,
    plugins: tuple[str, ...] = ("adaptive_guidance",),
    steps: int | None = None,
    timeout: float = 300.0,
) -> str:
    """Open the page, type a prompt, switch on ``plugins``, click Generate, wait for the numbers.

    Returns the text of the metrics table.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 90)
    wait.until(ec.element_to_be_clickable((By.ID, "generate-button")))
    # the model's panel updates (demo.load) enable the supported plugins' checkboxes
    wait.until(
        lambda d: (
            "accel family" in d.find_element(By.ID, "model-info").text
            or "unavailable" in d.find_element(By.ID, "model-info").text
        )
    )
    box = driver.find_element(By.CSS_SELECTOR, "#prompt textarea")
    box.clear()
    box.send_keys(prompt)
    if steps is not None:
        field = driver.find_element(By.CSS_SELECTOR, "#steps input[type=number]")
        field.clear()
        field.send_keys(str(steps))
    for key in plugins:
        panel = driver.find_element(By.ID, f"panel-{key}")
        panel.find_element(By.CSS_SELECTOR, "button, .label-wrap").click()
        checkbox = WebDriverWait(driver, 30).until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, f"#use-{key} input[type=checkbox]"))
        )
        if not checkbox.is_selected():
            checkbox.click()  # the panel stays open, showing its preset and settings
    driver.find_element(By.ID, "generate-button").click()
    WebDriverWait(driver, timeout).until(lambda d: "speedup" in d.find_element(By.ID, "metrics").text)
    time.sleep(1.0)  # let the images finish rendering
    return driver.find_element(By.ID, "metrics").text


def save_page(driver: Any, path: str, width: int = 1400) -> str:
    """A screenshot of the whole page at ``width`` px."""
    script = (
        "const app = document.querySelector('gradio-app');"
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight,"
        " app ? app.scrollHeight : 0, app ? app.getBoundingClientRect().bottom + window.scrollY : 0);"
    )
    for _ in range(2):  # a taller window can reflow the page: measure twice
        height = driver.execute_script(script)
        driver.set_window_size(width, min(max(int(height) + 120, 900), 4000))
        time.sleep(0.5)
    time.sleep(0.5)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    driver.save_screenshot(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m accel.app.screenshot")
    parser.add_argument("--out", default=os.path.join("docs", "images", "demo.png"))
    parser.add_argument("--tiny", action="store_true", help="a tiny random pipeline instead of sd-digits")
    parser.add_argument("--prompt", default="a handwritten 7")
    parser.add_argument("--plugin", action="append", default=None, help="plugin panels to switch on")
    args = parser.parse_args(argv)
    from ..pipelines.builtin import BUILTIN_MODELS
    from .app import CSS, build_app
    from .models import ModelSpec

    chromium, driver_path = ensure_browser()
    models = None
    if args.tiny or not BUILTIN_MODELS["sd-digits"].is_trained():
        from ..pipelines.testing import tiny_text_pipeline

        models = {
            "tiny-unet": ModelSpec(
                tiny_text_pipeline("unet"),
                title="tiny random U-Net pipeline",
                call_defaults={"height": 16, "width": 16},
                examples=(args.prompt,),
            )
        }
    demo = build_app(models=models)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=CSS)
    driver = start_driver(chromium, driver_path)
    try:
        text = run_generation(
            driver, f"http://127.0.0.1:{port}/", args.prompt, tuple(args.plugin or ("deepcache", "adaptive_guidance"))
        )
        print(text)
        print("screenshot:", save_page(driver, args.out))
    finally:
        driver.quit()
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
