#!/usr/bin/env python3
"""Drives the operator's console in a real headless Chromium (Debian's /usr/bin/chromium).

Started by tests/it/console.rs, which runs the relay and its sinks and tells this script, one
line at a time on stdin, what it changed; this script answers on stdout when the page showed
what it should. Any failed expectation, any JavaScript error or CSP violation on the page, and
any request the page makes outside loopback ends it with a non-zero exit and the reason on
stderr. Nothing here downloads a browser: Playwright drives the system Chromium.

Steps (the Rust side's lines in brackets):
  page lists the three targets, none with an open breaker   -> READY
  [events sent] the down target shows "breaker open" without a reload, the 422 dead letter
  shows its event id and reason, its detail shows body and attempts -> DEAD_LETTER_SHOWN
  [FIXED] Replay on its row                                  -> REPLAYED
  [DELIVERED] Find an event shows where it is per target; Pause and Enable by keyboard -> DONE
"""

import argparse
import ipaddress
import json
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import expect, sync_playwright

PATIENCE_MS = 30_000


def say(line):
    print(line, flush=True)


def hear(expected):
    line = sys.stdin.readline().strip()
    if line != expected:
        sys.exit(f"expected {expected!r} from the test, got {line!r}")


def is_loopback(url):
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        # Not a network request; still only what the page itself made.
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="the admin listener, http://127.0.0.1:PORT")
    ap.add_argument("--token", required=True)
    ap.add_argument("--healthy", required=True)
    ap.add_argument("--rejecting", required=True)
    ap.add_argument("--down", required=True)
    ap.add_argument("--event-id", required=True)
    ap.add_argument("--shots", required=True, help="folder for the screenshots")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)

    outside = []
    problems = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        # A persistent context on a fresh profile: the flags keep Chromium itself from calling
        # home (those requests would not be the page's anyway: only the page's are counted).
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=args.chromium,
            headless=True,
            viewport={"width": 1280, "height": 900},
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-gpu",
                "--disable-dev-shm-usage",
            ],
        )
        page = context.pages[0] if context.pages else context.new_page()

        def on_request(route):
            url = route.request.url
            if is_loopback(url):
                route.continue_()
            else:
                outside.append(url)
                route.abort()

        page.route("**/*", on_request)
        page.on("request", lambda r: None if is_loopback(r.url) else outside.append(r.url))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        # Chromium logs every non-2xx fetch as an error: the 401 that brings up the token
        # prompt and the 404 of an unknown event are answers the page handles, not faults.
        handled = ("status of 401", "status of 404")
        page.on(
            "console",
            lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and not any(h in m.text for h in handled)
            else None,
        )

        response = page.goto(args.url + "/")
        assert response is not None and response.status == 200, "GET / answers 200"
        csp = response.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp, f"the page carries a strict CSP, got {csp!r}"
        assert "unsafe-inline" not in csp, csp

        # The relay has admin.token set: the page asks for it, once.
        token_input = page.get_by_label("Token", exact=True)
        expect(token_input).to_be_visible(timeout=PATIENCE_MS)
        token_input.fill(args.token)
        page.get_by_role("button", name="Use token").click()
        expect(page.locator("#token-dialog")).not_to_be_visible()
        assert args.token not in page.url, "the token never goes into the URL"
        # Survives only if the page is never reloaded: everything below must arrive live.
        page.evaluate("window.__sameDocument = 'yes'")

        cards = {name: page.locator(f'article.target[data-target="{name}"]') for name in (args.healthy, args.rejecting, args.down)}
        for name, card in cards.items():
            expect(card).to_be_visible(timeout=PATIENCE_MS)
            expect(card.get_by_role("heading", name=name)).to_be_visible()
        expect(cards[args.down].locator(".state")).not_to_have_text("breaker open")
        expect(page.locator("#status")).to_contain_text("Live", timeout=PATIENCE_MS)
        # The storage budget from GET /api/v1/store: ingest open, free space shown.
        store = page.locator("#store")
        expect(store.locator("div", has=page.get_by_text("Ingest", exact=True)).locator("dd")).to_have_text("open", timeout=PATIENCE_MS)
        expect(store).to_contain_text("Free space")
        expect(store).to_contain_text("Reserve for draining")
        say("READY")

        # Events are flowing now. The down target's breaker opens, seen by polling alone.
        expect(cards[args.down].locator(".state")).to_have_text("breaker open", timeout=PATIENCE_MS)
        expect(cards[args.healthy].locator(".state")).to_have_text("ok")
        expect(cards[args.rejecting].locator("[data-key=dead]")).to_have_text("1", timeout=PATIENCE_MS)
        expect(cards[args.down].locator(".last-error")).to_contain_text("Last error", timeout=PATIENCE_MS)
        # Rates need two scrapes with deliveries between them: the healthy target's chart has a line.
        expect(cards[args.healthy].locator("svg polyline").first).to_be_attached(timeout=PATIENCE_MS)
        page.screenshot(path=str(shots / "overview-1280.png"), full_page=True)

        page.get_by_role("link", name="Dead letters").click()
        row = page.locator("#dl-table tbody tr", has_text=args.event_id)
        expect(row).to_have_count(1, timeout=PATIENCE_MS)
        expect(row.locator("td[data-label=Target]")).to_have_text(args.rejecting)
        expect(row.locator("td[data-label='Last status']")).to_have_text("422")
        expect(row.locator("td[data-label=Reason]")).to_contain_text("422")
        page.screenshot(path=str(shots / "dead-letters-1280.png"), full_page=True)

        row.get_by_role("button", name="Details").click()
        dialog = page.locator("#detail-dialog")
        expect(dialog).to_be_visible()
        expect(dialog.locator("#detail-format")).to_have_text("json")
        body = dialog.locator("#detail-body").inner_text()
        assert json.loads(body)["id"] == args.event_id, body
        assert "\n  " in body, "the JSON body is pretty-printed"
        expect(dialog.locator("#detail-attempts tbody tr")).to_have_count(1)
        expect(dialog.locator("#detail-attempts tbody tr")).to_contain_text("422")
        page.screenshot(path=str(shots / "dead-letter-detail-1280.png"))
        page.keyboard.press("Escape")
        expect(dialog).not_to_be_visible()

        # The phone-sized layout: everything still there, no sideways scrolling.
        page.set_viewport_size({"width": 390, "height": 844})
        expect(row.locator("td[data-label=Reason]")).to_be_visible()
        page.screenshot(path=str(shots / "dead-letters-390.png"), full_page=True)
        page.get_by_role("link", name="Overview").click()
        expect(cards[args.down].locator(".state")).to_be_visible()
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 390, f"the page scrolls sideways at 390 px ({wide} px wide)"
        page.screenshot(path=str(shots / "overview-390.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.get_by_role("link", name="Dead letters").click()
        expect(row).to_have_count(1)
        say("DEAD_LETTER_SHOWN")

        hear("FIXED")
        row.get_by_role("button", name="Replay").click()
        expect(page.locator("#dl-message")).to_contain_text("Replayed 1 dead letter.", timeout=PATIENCE_MS)
        expect(row).to_have_count(0, timeout=PATIENCE_MS)
        say("REPLAYED")

        hear("DELIVERED")
        page.get_by_role("link", name="Find an event").click()
        page.get_by_label("TextUs event id").fill(args.event_id)
        page.get_by_role("button", name="Find").click()
        result = page.locator("#find-result")
        where = lambda name: result.locator(f'tr[data-target="{name}"] td[data-label=Where]')
        expect(where(args.healthy)).to_have_text("delivered", timeout=PATIENCE_MS)
        expect(where(args.rejecting)).to_have_text("delivered")
        expect(where(args.down)).to_contain_text("queued")
        expect(where(args.down)).to_contain_text("next attempt")
        page.screenshot(path=str(shots / "find-1280.png"), full_page=True)
        page.get_by_label("TextUs event id").fill("/integrations/none/deliveries/never-sent")
        page.keyboard.press("Enter")
        expect(result).to_contain_text("Not known", timeout=PATIENCE_MS)

        # Pause and Enable from the keyboard alone.
        page.get_by_role("link", name="Overview").click()
        healthy = cards[args.healthy]
        healthy.get_by_role("button", name="Pause").focus()
        page.keyboard.press("Enter")
        expect(healthy.locator(".state")).to_have_text("paused", timeout=PATIENCE_MS)
        enable = healthy.get_by_role("button", name="Enable")
        expect(enable).to_be_enabled()
        enable.focus()
        page.keyboard.press("Space")
        expect(healthy.locator(".state")).to_have_text("ok", timeout=PATIENCE_MS)

        if page.evaluate("window.__sameDocument") != "yes":
            problems.append("the page was reloaded; the console must update live")
        context.close()

    if outside:
        problems.append(f"the page requested addresses outside loopback: {outside}")
    if problems:
        sys.exit("\n".join(problems))
    say("DONE")


if __name__ == "__main__":
    main()
