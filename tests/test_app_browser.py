"""The demo in a real browser: headless Chromium loads the page, runs a generation, takes a screenshot.

Needs Debian's ``chromium`` and ``chromium-driver`` (installed on the fly when running as root with
apt-get; set ACCEL_NO_APT=1 to forbid that) and the ``selenium`` package; skipped otherwise,
except where ACCEL_REQUIRE_BROWSER=1 (set by ``.ci/run``): there a missing browser is a failure,
so CI cannot go green without having run the demo in a browser.
The screenshot goes to ``tests/artifacts/demo.png`` (its path is printed).
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.browser

ARTIFACT = os.path.join(os.path.dirname(__file__), "artifacts", "demo.png")


REQUIRED = os.environ.get("ACCEL_REQUIRE_BROWSER") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"ACCEL_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("the browser test needs selenium (pip install selenium)")
    from accel.app.screenshot import ensure_browser

    try:
        chromium, chromedriver = ensure_browser(install=not os.environ.get("ACCEL_NO_APT"))
    except RuntimeError as exc:
        _unavailable(f"no headless Chromium: {exc}")
    return chromium, chromedriver


def test_generation_in_a_browser(browser):
    from accel.app import ModelSpec, build_app
    from accel.app.app import CSS
    from accel.app.screenshot import free_port, run_generation, save_page, start_driver
    from accel.pipelines.testing import tiny_text_pipeline

    models = {
        "tiny-unet": ModelSpec(
            tiny_text_pipeline("unet"),
            title="tiny random U-Net pipeline",
            call_defaults={"height": 16, "width": 16},
            examples=("a handwritten 7",),
        )
    }
    demo = build_app(models=models, runs_root=os.path.join(os.path.dirname(__file__), "no-runs-here"))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=CSS)
    driver = start_driver(*browser)
    try:
        text = run_generation(
            driver, f"http://127.0.0.1:{port}/", "a handwritten 7", plugins=("adaptive_guidance",), steps=8
        )
        from selenium.webdriver.common.by import By

        images = driver.find_elements(By.CSS_SELECTOR, "#baseline-image img, #accelerated-image img")
        assert len(images) == 2 and all(img.get_attribute("src") for img in images)
        assert "speedup" in text and "NFEs" in text and "ag" in text
        path = save_page(driver, ARTIFACT)
        print(f"\nscreenshot: {path}")
        assert os.path.getsize(path) > 10_000
    finally:
        driver.quit()
        demo.close()
