"""The web console (/console on the admin listener) driven in a real headless
Chromium through selenium, against the release binary with a real deployment
of the threshold-rules wasm plugin writing alerts, a shadow of it, a
consumer group, a replay job and a `vigil eval` report run against the same
broker.

Checks the DOM of every page (cards, tables, plots with points, the diff
rows, flagged rows and windows on the eval plots) and that undeploy asks for
confirmation, does nothing when cancelled and undeploys when confirmed.
Screenshots go to target/test-artifacts/console/."""

from __future__ import annotations

import json
import random
import subprocess
import time

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from conftest import REPO_ROOT, vigil_bin
from detectors import admin_of, produce, spec, wait_caught_up, wait_status, wasm_path
from helpers import Deadline, ck_consumer, ck_create_topic, unique_name
from test_eval import make_corpus

THRESHOLD = "vigil_plugin_threshold_rules"
ARTIFACTS = REPO_ROOT / "target" / "test-artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The sampler runs every 2 s; rates need two samples, the plots want more.
PLOT_WAIT_S = 40
SCHEMA = {"amount": "float64"}


def above(limit: float) -> dict:
    return {"rules": [{"name": "big", "field": "amount", "op": ">", "value": limit, "severity": "high"}]}


def amounts(rng: random.Random, n: int) -> list[dict]:
    """n records {"amount": ...}, about one in 8 above 5000."""
    out = []
    for i in range(n):
        amount = rng.uniform(5001, 9000) if rng.randrange(8) == 0 else rng.uniform(0, 5000)
        out.append({"key": f"k{i % 7}", "value": json.dumps({"amount": round(amount, 2)}),
                    "headers": [("origin", b"console-test")]})
    return out


@pytest.fixture
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1400,1000"):
        opts.add_argument(a)
    # Explicit paths: selenium would otherwise try to download a driver.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, what: str, cond, timeout: float = 20):
    """Polls cond(driver) until it returns something truthy (re-finding
    elements each time: the live pages re-render every few seconds)."""
    dl = Deadline(timeout, what)
    last = None
    while True:
        try:
            got = cond(driver)
            if got:
                return got
        except (StaleElementReferenceException, WebDriverException) as e:
            last = e
        if dl.expired():
            status = driver.find_element(By.ID, "status").text
            shot(driver, f"timeout-{what.replace(' ', '-')[:40]}", check=False)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; status bar: {status!r}; last error {last!r}")
        time.sleep(0.2)


def shot(driver, name: str, check: bool = True) -> None:
    """Saves a screenshot; with `check`, fails if the page reported an error
    in its status bar (a failed request or a script error caught there)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    if check:
        status = driver.find_element(By.ID, "status")
        assert "error" not in (status.get_attribute("class") or ""), f"{name}: {status.text}"


def goto(driver, base: str, route: str) -> None:
    """Opens #/ROUTE and waits until the page rendered it (a hash change
    renders asynchronously; the previous page stays until then)."""
    driver.get(f"{base}/console#/{route}")
    want = "#/" + route.split("?")[0]
    wait_for(driver, f"page {route} rendered",
             lambda d: d.find_element(By.ID, "main").get_attribute("data-route") == want)


def points(driver, series: str) -> int:
    els = driver.find_elements(By.CSS_SELECTOR, f'.plot[data-series="{series}"] svg')
    return int(els[0].get_attribute("data-points")) if els else -1


def rows(driver, cls: str) -> list[str]:
    return [r.text for r in driver.find_elements(By.CSS_SELECTOR, f"tr.{cls}")]


def test_console_pages_plots_diff_eval_and_undeploy(broker, browser, tmp_path):
    admin = admin_of(broker)
    base = broker.admin_url
    module = admin.upload_module(THRESHOLD)
    topic = unique_name("console-in")
    ck_create_topic(broker.bootstrap, topic, 2)
    name, out = unique_name("live"), unique_name("live-out")
    admin.deploy(spec(name, module, topic, out, above(5000), value_schema=SCHEMA,
                      start="earliest"))
    shadow = admin.expect(201, "POST", f"/v1/deployments/{name}/shadow",
                          json_body={"module": module, "config": above(4000)})["name"]

    # Input over several sampling periods, so rates have points; a group
    # consumes part of it and commits, so it has lag to show.
    rng = random.Random(15)
    produced = []
    for _ in range(4):
        produced += produce(broker.bootstrap, topic, amounts(rng, 150))
        time.sleep(1.0)  # spreads the input over samples (not a synchronisation)
    ends = {}
    for p in produced:
        ends[(topic, p.partition)] = max(ends.get((topic, p.partition), 0), p.offset + 1)
    wait_caught_up(admin, name, ends)
    wait_caught_up(admin, shadow, ends)
    group = unique_name("console-group")
    consumer = ck_consumer(broker.bootstrap, group)
    consumer.subscribe([topic])
    got, dl = 0, Deadline(30, "consuming for the group")
    while got < 100:
        dl.check(f"(got {got})")
        got += sum(1 for m in consumer.consume(num_messages=100, timeout=1.0) if not m.error())
    consumer.commit(asynchronous=False)

    replay = admin.expect(201, "POST", "/v1/replays", json_body={"module": module, "topic": topic,
                                                                 "config": above(5000), "value_schema": SCHEMA,
                                                                 "budget": {"parallelism": 2, "cpu_share": 0.5}})
    # A NAB-style eval against this broker, so its input topic stays here.
    corpus = tmp_path / "corpus"
    make_corpus(corpus)
    ev = subprocess.run([str(vigil_bin()), "eval", "--module", str(wasm_path("vigil_plugin_seasonal")),
                         "--dataset", str(corpus), "--config", '{"threshold": 0.65}', "--json",
                         "--admin", base, "--bootstrap", broker.bootstrap],
                        capture_output=True, text=True, timeout=120)
    assert ev.returncode == 0, f"vigil eval failed:\n{ev.stdout}\n{ev.stderr}"
    report_file = tmp_path / "report.json"
    report_file.write_text(ev.stdout)
    report = json.loads(ev.stdout)
    wait_status(admin, name, lambda s: sum(p["alerts"] for p in s["partitions"]) > 0, 30, "alerts")

    # ------------------------------------------------------------ overview
    goto(browser, base, "overview")
    assert browser.find_element(By.ID, "card-brokers").text.endswith("1")
    wait_for(browser, "produce rate plot with points", lambda d: points(d, "broker.produce_per_sec") >= 2, PLOT_WAIT_S)
    assert points(browser, "storage.upload_lag_ms") >= 2
    for series in ("storage.cache_hit_ratio", "storage.object_store_requests_per_sec", "broker.fetch_per_sec"):
        assert points(browser, series) >= 0, f"no {series} plot"
    assert "Object store requests: " in browser.find_element(By.ID, "main").text
    # Nothing was fetched from another origin (no CDN).
    origins = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert origins and all(u.startswith(base + "/") for u in origins), origins
    shot(browser, "overview")

    # -------------------------------------------------- topics + records
    goto(browser, base, "topics")
    assert any(r.startswith(topic) for r in rows(browser, "topic-row")), rows(browser, "topic-row")
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "tr.topic-row") if r.text.startswith(topic))
    assert int(row.find_element(By.CSS_SELECTOR, ".size").get_attribute("data-bytes")) > 0, row.text
    shot(browser, "topics")
    goto(browser, base, f"topics/{topic}")
    recs = wait_for(browser, "record browser rows", lambda d: rows(d, "record-row"))
    assert len(recs) == 20, len(recs)
    assert len(rows(browser, "topic-partition-row")) == 2
    assert "amount" in recs[0] and "origin: console-test" in recs[0], recs[0]
    shot(browser, "topic-records")

    # ------------------------------------------------------------ groups
    goto(browser, base, "groups")
    heads = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h3.group-name")]
    assert any(h.startswith(group) for h in heads), heads
    offsets = rows(browser, "group-offset")
    assert any(topic in r for r in offsets), offsets
    shot(browser, "groups")
    consumer.close()

    # --------------------------------------------------------- detectors
    goto(browser, base, "detectors")
    listed = rows(browser, "deployment-row")
    assert any(r.startswith(name) for r in listed) and any(r.startswith(shadow) for r in listed), listed
    goto(browser, base, f"detectors/{name}")
    for s in ("records_per_sec", "alerts_per_sec", "lag", "event_age_ms"):
        wait_for(browser, f"{s} plot with points", lambda d: points(d, f"deployment.{name}.{s}") >= 2, PLOT_WAIT_S)
    alerts = wait_for(browser, "recent alerts", lambda d: rows(d, "alert-row"))
    assert "high" in alerts[0], alerts[0]
    assert f"{topic}[" in alerts[0], alerts[0]
    assert browser.find_elements(By.CSS_SELECTOR, "rect.version-seg"), "no versions timeline"
    assert len(rows(browser, "partition-row")) == 2
    shot(browser, "deployment")

    # ------------------------------------------------------------ replays
    dl = Deadline(60, "replay completed")
    while admin.expect(200, "GET", f"/v1/replays/{replay['id']}")["state"] != "completed":
        dl.check()
        time.sleep(0.2)
    goto(browser, base, "replays")
    rr = wait_for(browser, "replay row", lambda d: [r for r in rows(d, "replay-row") if r.startswith(replay["id"])])
    assert "completed" in rr[0], rr[0]
    # The budget it ran under, as given.
    assert "2 partitions at once, 0.5 cores" in rr[0], rr[0]
    shot(browser, "replays")

    # -------------------------------------------------------------- diff
    goto(browser, base, "diff")
    assert browser.find_element(By.ID, "diff-a").get_attribute("value") == name
    assert browser.find_element(By.ID, "diff-b").get_attribute("value") == shadow
    diff_rows = wait_for(browser, "diff rows", lambda d: rows(d, "diff-row"))
    assert all(r.startswith(topic) for r in diff_rows), diff_rows
    api_diff = admin.expect(200, "POST", "/v1/diff", json_body={"a": name, "b": shadow})
    total = browser.find_element(By.ID, "diff-total").text
    assert f"only {shadow}: {api_diff['total']['only_b']}" in total, total
    assert api_diff["total"]["only_b"] > 0, api_diff  # the shadow alerts on 4000..5000 too
    shot(browser, "diff")

    # -------------------------------------------------------------- eval
    goto(browser, base, "eval")
    browser.find_element(By.ID, "eval-windows").send_keys(str(corpus / "combined_windows.json"))
    browser.find_element(By.ID, "eval-report").send_keys(str(report_file))
    wait_for(browser, "eval plots", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#eval-result .plot")) == 2)
    for f in report["files"]:
        wait_for(browser, f"{f['name']} plotted", lambda d: points(d, f["name"]) == f["records"])
        box = browser.find_element(By.CSS_SELECTOR, f'.plot[data-series="{f["name"]}"]')
        assert len(box.find_elements(By.CSS_SELECTOR, "line.flag")) == len(f["flagged_rows"]) > 0
        assert len(box.find_elements(By.CSS_SELECTOR, "rect.window")) == 1
    assert len(rows(browser, "eval-file-row")) == 2
    shot(browser, "eval")

    # ------------------------------------- pause and resume with confirmation
    goto(browser, base, f"detectors/{name}")
    browser.find_element(By.ID, "btn-pause").click()
    assert name in browser.find_element(By.ID, "modal-text").text
    browser.find_element(By.ID, "modal-cancel").click()
    assert admin.status(name)["state"] == "running"  # cancelled: nothing happened
    browser.find_element(By.ID, "btn-pause").click()
    browser.find_element(By.ID, "modal-ok").click()
    wait_status(admin, name, lambda s: s["state"] == "paused", 20, "paused from the console")
    wait_for(browser, "the resume button", lambda d: d.find_elements(By.ID, "btn-resume"))
    assert "paused" in browser.find_element(By.CSS_SELECTOR, "h2 .state-paused").text
    shot(browser, "paused")
    browser.find_element(By.ID, "btn-resume").click()
    browser.find_element(By.ID, "modal-ok").click()
    wait_status(admin, name, lambda s: s["state"] == "running", 20, "resumed from the console")
    wait_for(browser, "the pause button again", lambda d: d.find_elements(By.ID, "btn-pause"))
    assert browser.find_element(By.ID, "last-error").text == "None."

    # --------------------------------------------- undeploy with confirmation
    goto(browser, base, f"detectors/{shadow}")
    browser.find_element(By.ID, "btn-undeploy").click()
    modal = browser.find_element(By.ID, "modal")
    assert modal.is_displayed() and shadow in browser.find_element(By.ID, "modal-text").text
    shot(browser, "undeploy-confirm")
    browser.find_element(By.ID, "modal-cancel").click()
    assert not modal.is_displayed()
    assert admin.status(shadow)["name"] == shadow  # still there
    browser.find_element(By.ID, "btn-undeploy").click()
    browser.find_element(By.ID, "modal-ok").click()
    dl = Deadline(20, f"{shadow} undeployed")
    while admin.request("GET", f"/v1/deployments/{shadow}")[0] != 404:
        dl.check()
        time.sleep(0.2)
    wait_for(browser, "back on the list without it", lambda d: d.current_url.endswith("#/detectors")
             and d.find_element(By.ID, "main").get_attribute("data-page") == "detectors"
             and not any(r.startswith(shadow) for r in rows(d, "deployment-row"))
             and any(r.startswith(name) for r in rows(d, "deployment-row")))
    shot(browser, "after-undeploy")
