"""Real-browser tests: Debian's Chromium, driven by Playwright (pytest-playwright), against the
Docker-less runner's stack (PostgreSQL, Redis, gunicorn, Celery, nginx) through nginx.

One stack for these tests (stopped after the last of them, not left idling through the compose
stacks' tests) and one browser for the session; every test gets fresh browser contexts (cookies,
cart). Without Chromium (or the stack's programs) the tests skip on a developer's machine and
fail under CI=true (tests/stack/programs.py). A failed test leaves a screenshot and
the HTML of every open page in test-artifacts/browser/, whose paths the report and .ci/run print.
"""

import shutil
import time

import pytest
from playwright.sync_api import expect

from ops.runner import PROJECT_ROOT
from tests.shop_http import STAFF_PASSWORD, STAFF_USER
from tests.stack import programs
from tests.stack.runner import StackRunner, fresh_stack

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "browser"
# Without the background-networking switches Chromium's own connections (updates, sync, QUIC
# probes) are refused on our machines, and page loads then stall behind them.
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE_VIEWPORT = {"width": 375, "height": 740}
ACTION_TIMEOUT_MS = 10_000  # a click or a page load; Playwright's 30 s would only slow a failure


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's Chromium instead of a browser Playwright would download (`playwright install`
    cannot reach its download host here)."""
    return {
        **browser_type_launch_args,
        "executable_path": programs.chromium_program(),
        "headless": browser_type_launch_args.get("headless", True),  # pytest --headed to watch
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture(scope="package")
def shop_stack(tmp_path_factory) -> StackRunner:
    """The runner's stack with the tests' catalog (tests/browser/catalog.py) and a staff user."""
    programs.stack_programs()  # skip, or fail on CI, without them
    programs.chromium_program()  # before the stack's start, not after it
    timings = {}
    began = time.monotonic()
    try:
        # Its data is thrown away afterwards: no orderly stop (tests/stack tests those).
        with fresh_stack(
            tmp_path_factory.mktemp("browser-stack") / "stack.log", graceful_stop=False
        ) as stack:
            timings["start"] = stack.start()
            seeded = time.monotonic()
            stack.manage(
                "shell",
                "-c",
                f"from tests.browser.catalog import seed; seed({STAFF_USER!r}, {STAFF_PASSWORD!r})",
            )
            timings["catalog"] = time.monotonic() - seeded
            yield stack
            stopped = time.monotonic()
        timings["stop"] = time.monotonic() - stopped
    finally:
        timings["in all"] = time.monotonic() - began
        print("\nbrowser stack timings (s):", {name: round(value, 1) for name, value in timings.items()})


@pytest.fixture(scope="package")
def browser_context_args(shop_stack):
    return {"base_url": shop_stack.url, "locale": "en-GB"}


@pytest.fixture
def new_context(new_context):
    """pytest-playwright's, with a shorter time limit for actions and assertions."""

    def make(**options):
        context = new_context(**options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        return context

    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    return make


@pytest.fixture
def phone(new_context):
    """A page 375 CSS pixels wide, as on a small phone."""
    return new_context(viewport=PHONE_VIEWPORT, is_mobile=True, has_touch=True).new_page()


# --- Screenshots and HTML of a failed test -----------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _empty_artifacts_folder():
    shutil.rmtree(ARTIFACTS, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        saved = save_open_pages(item)
        if saved:
            report.sections.append(("browser artifacts", "\n".join(str(path) for path in saved)))
    return report


def save_open_pages(item) -> list:
    """A full-page screenshot and the HTML of every page the test still has open (all of its
    contexts: a shopper's and a staff user's)."""
    browser = item.funcargs.get("browser")
    if browser is None:
        return []
    folder = ARTIFACTS / item.nodeid.replace("/", "_").replace("::", "__")
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for context_number, context in enumerate(browser.contexts):
        for page_number, page in enumerate(context.pages):
            stem = folder / f"context{context_number}-page{page_number}"
            try:
                page.screenshot(path=f"{stem}.png", full_page=True, timeout=10_000)
                saved.append(f"{stem}.png")
                (stem.with_suffix(".html")).write_text(f"<!-- {page.url} -->\n{page.content()}")
                saved.append(f"{stem}.html")
            except Exception as error:  # a crashed page must not hide the failure itself
                saved.append(f"{stem}: not saved ({error})")
    return saved
