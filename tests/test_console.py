"""The web console in a real browser: Debian's Chromium driven by Selenium, headless, on one lab.

The tests run in file order on one lab and one browser (module scope): a refused and an accepted upload, a
listener created and watched from `configuring` to `running`, real HTTPS requests seen in the log and the
traffic chart, a refused delete, the probe's TLS matrix, the token login. With LBSIM_SCREENSHOTS=DIR set they
also save the screenshots docs/console.md shows (`LBSIM_SCREENSHOTS=docs/console`).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from simulator.certs.mint import cert_pem, key_pem, make_cert, make_key
from simulator.faces.console import ConsoleServer
from simulator.harness.running import RunningLab, start_lab

TIME_SCALE = 0.02  # activation_delay 100 vendor seconds = 2 s here
SCRIPT = "<script>alert('lbsim')</script>"
SHOTS = os.environ.get("LBSIM_SCREENSHOTS")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
state: dict[str, Any] = {}  # what one test leaves for the next (the module is one story)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    running = start_lab(out_dir=tmp_path_factory.mktemp("console-lab"), time_scale=TIME_SCALE)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "the console tests need Debian's chromium and chromium-driver: make setup installs them "
        "(apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="lbsim-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: webdriver.Chrome, predicate: Any, timeout: float = 15) -> Any:
    # Stale elements: the page navigated (a form's redirect) or refreshed a part between find and read.
    # Chrome reports the same race, when it hits inside its inspector, as a generic error about the node.
    def attempt(d: webdriver.Chrome) -> Any:
        try:
            return predicate(d)
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return False
            raise

    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(attempt)


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    """The whole page as docs/console/<name>.png, only with LBSIM_SCREENSHOTS set."""
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(600, height + 20), 4000))
    driver.execute_script("window.scrollTo(0, 0)")  # from the top, whatever anchor the page was opened at
    driver.save_screenshot(str(Path(SHOTS) / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def field_errors(driver: webdriver.Chrome, field: str) -> str:
    found = driver.find_elements(By.ID, f"errors-{field}")
    return found[0].text if found else ""


def no_alert(driver: webdriver.Chrome) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text


def rsa_chain(common_name: str) -> tuple[bytes, bytes]:
    """A server chain (leaf, then its CA) and the leaf's PKCS#1 key; RSA, so both profiles take it."""
    ca_key = make_key("rsa")
    ca = make_cert("console test CA", ca_key, ca=True)
    key = make_key("rsa")
    leaf = make_cert(common_name, key, issuer=(ca, ca_key), sans=["localhost"])
    return cert_pem(leaf, ca), key_pem(key)


def fill(driver: webdriver.Chrome, name: str, text: str) -> None:
    element = driver.find_element(By.NAME, name)
    element.clear()
    if text:
        # Long PEM text through send_keys is slow; the value is set as a user paste would set it.
        driver.execute_script("arguments[0].value = arguments[1]", element, text)


def click(driver: webdriver.Chrome, element_id: str, tries: int = 5) -> None:
    """Click a button of a part the page refreshes every second: found again if it was replaced meanwhile."""
    for attempt in range(tries):
        try:
            driver.find_element(By.ID, element_id).click()
            return
        except (StaleElementReferenceException, WebDriverException):
            if attempt == tries - 1:
                raise


def open_page(driver: webdriver.Chrome, lab: RunningLab, path: str) -> None:
    driver.get(lab.lab.console.url + path)


# ---- certificates ------------------------------------------------------------------------------------------------


def test_a_refused_upload_shows_the_vendor_findings_on_their_fields_and_keeps_the_input(
        lab: RunningLab, browser: webdriver.Chrome, tmp_path: Path) -> None:
    ecdsa_key = make_key("ecdsa")
    (tmp_path / "ecdsa.pem").write_bytes(cert_pem(make_cert("ecdsa.example", ecdsa_key, sans=["ecdsa.example"])))
    (tmp_path / "ecdsa.key").write_bytes(key_pem(ecdsa_key))
    before = len(lab.lab.store.list())
    open_page(browser, lab, "/certificates")
    browser.find_element(By.NAME, "name").send_keys("ecdsa-for-aliyun")
    Select(browser.find_element(By.NAME, "profile")).select_by_value("aliyun-slb")
    browser.find_element(By.NAME, "cert_file").send_keys(str(tmp_path / "ecdsa.pem"))  # chosen files, not pasted
    browser.find_element(By.NAME, "key_file").send_keys(str(tmp_path / "ecdsa.key"))
    browser.find_element(By.ID, "upload-submit").click()
    wait(browser, lambda d: field_errors(d, "cert"))
    # aliyun-slb takes RSA only: the finding is on the certificate field, with lbsim's hint.
    assert "UnsupportedKeyType" in field_errors(browser, "cert") and "hint:" in field_errors(browser, "cert")
    assert "invalid" in browser.find_element(By.CSS_SELECTOR, '[data-field="cert"]').get_attribute("class")
    # Nothing typed or chosen is lost: the name as typed, the files' text in the fields.
    assert browser.find_element(By.NAME, "name").get_attribute("value") == "ecdsa-for-aliyun"
    assert "BEGIN CERTIFICATE" in browser.find_element(By.NAME, "cert").get_attribute("value")
    assert "PRIVATE KEY" in browser.find_element(By.NAME, "key").get_attribute("value")
    assert len(lab.lab.store.list()) == before
    screenshot(browser, "upload-refused")


def test_the_preflight_check_says_what_the_vendor_would_do_and_stores_nothing(
        lab: RunningLab, browser: webdriver.Chrome) -> None:
    cert, key = rsa_chain("preflight.example")
    before = len(lab.lab.store.list())
    open_page(browser, lab, "/certificates/check")
    fill(browser, "name", "preflight")
    fill(browser, "cert", cert.decode())
    fill(browser, "key", "")
    browser.find_element(By.ID, "upload-submit").click()
    wait(browser, lambda d: d.find_elements(By.ID, "verdict"))
    assert "would refuse" in browser.find_element(By.ID, "verdict").text
    assert "MissingPrivateKey" in field_errors(browser, "key")
    fill(browser, "key", key.decode())
    browser.find_element(By.ID, "upload-submit").click()
    wait(browser, lambda d: "would accept" in d.find_element(By.ID, "verdict").text)
    assert "preflight.example" in browser.find_element(By.ID, "verdict").text
    assert len(lab.lab.store.list()) == before
    screenshot(browser, "certificate-check")


def test_an_accepted_upload_shows_a_script_subject_as_text(lab: RunningLab, browser: webdriver.Chrome) -> None:
    cert, key = rsa_chain(SCRIPT)
    open_page(browser, lab, "/certificates")
    fill(browser, "name", "console-web")
    fill(browser, "cert", cert.decode())
    fill(browser, "key", key.decode())
    browser.find_element(By.ID, "upload-submit").click()
    wait(browser, lambda d: d.find_elements(By.ID, "facts"))
    assert "Uploaded." in browser.find_element(By.CSS_SELECTOR, ".notice").text
    facts = browser.find_element(By.ID, "facts").text
    subject = next(c.subject for c in lab.lab.store.list() if c.name == "console-web")  # RFC 4514: CN=\<script\>...
    assert "<script" in subject and subject in facts and "RSA 2048" in facts
    no_alert(browser)
    state["cert_url"] = browser.current_url.split("?")[0]
    open_page(browser, lab, "/certificates")
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#certificates tbody tr") if "console-web" in r.text)
    assert subject in row.text and "days left" in row.text
    assert not browser.find_elements(By.XPATH, "//script[contains(., 'lbsim')]")  # never markup
    no_alert(browser)
    screenshot(browser, "certificates")
    browser.get(state["cert_url"])
    screenshot(browser, "certificate-detail")


# ---- listeners -------------------------------------------------------------------------------------------------


def test_a_listener_created_with_the_vendor_fields_goes_from_configuring_to_running(
        lab: RunningLab, browser: webdriver.Chrome) -> None:
    open_page(browser, lab, "/listeners/new?profile=tencent-clb")
    fill(browser, "name", "console-web")
    Select(browser.find_element(By.NAME, "server_certificate")).select_by_value("console-web")
    # tencent's own fields: a custom policy (protocols and cipher string) and an SNI domain with its certificate.
    Select(browser.find_element(By.NAME, "tls_policy")).select_by_value("custom")
    for box in browser.find_elements(By.NAME, "tls_versions"):
        if box.is_selected() != (box.get_attribute("value") in ("TLSv1.2", "TLSv1.3")):
            box.click()
    fill(browser, "tls_ciphers", "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384")
    fill(browser, "sni_domain_0", "ecdsa.lbsim.test")
    Select(browser.find_element(By.NAME, "sni_cert_0")).select_by_value("lab-ecdsa")
    fill(browser, "idle_timeout", "999")  # out of the vendor's range: the model says so, on this field
    fill(browser, "activation_delay", "100")
    browser.find_element(By.ID, "listener-submit").click()
    wait(browser, lambda d: field_errors(d, "idle_timeout"))
    assert "1..60" in field_errors(browser, "idle_timeout")
    assert browser.find_element(By.NAME, "name").get_attribute("value") == "console-web"
    assert browser.find_element(By.NAME, "tls_ciphers").get_attribute("value").startswith("ECDHE-RSA-AES128-GCM")
    assert browser.find_element(By.NAME, "sni_domain_0").get_attribute("value") == "ecdsa.lbsim.test"
    assert not any(l.name == "console-web" for l in lab.lab.registry.listeners.values())
    screenshot(browser, "listener-form")
    fill(browser, "idle_timeout", "30")
    browser.find_element(By.ID, "listener-submit").click()
    wait(browser, lambda d: d.find_elements(By.ID, "listeners-table"))
    listener = next(l for l in lab.lab.registry.listeners.values() if l.name == "console-web")
    state["port"] = listener.port

    def row_status(d: webdriver.Chrome) -> str:
        try:  # the table is replaced every second: an element found may be gone when read
            row = next((r for r in d.find_elements(By.CSS_SELECTOR, "#listeners-table tbody tr") if "console-web" in r.text), None)
            return row.find_element(By.CSS_SELECTOR, ".status").text + " " + row.text if row is not None else ""
        except StaleElementReferenceException:
            return ""

    first = wait(browser, row_status)
    assert first.startswith("configuring") and "activates in" in first
    screenshot(browser, "listeners")
    wait(browser, lambda d: row_status(d).startswith("running"), timeout=20)  # the page refreshes itself (no reload)
    spec = listener.active.spec
    assert spec.policy.versions == ("TLSv1.2", "TLSv1.3") and dict(spec.sni) == {"ecdsa.lbsim.test": "lab-ecdsa"}
    assert spec.idle_timeout == 30


def https_requests(port: int, n: int) -> None:
    """`n` requests, each on a new connection (a full handshake each), with Python's ssl."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the console-web chain is self-made
    for _ in range(n):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        try:
            conn.request("GET", "/hello")
            assert conn.getresponse().read()
        finally:
            conn.close()


def test_requests_show_in_the_traffic_chart_and_the_connection_log(lab: RunningLab, browser: webdriver.Chrome) -> None:
    port = state["port"]
    https_requests(port, 3)
    open_page(browser, lab, "/traffic")
    section = f"traffic-{port}"

    def new_connections(d: webdriver.Chrome) -> float:
        keys = d.find_elements(By.CSS_SELECTOR, f'#{section} .key[data-series="new"]')
        return float(keys[0].get_attribute("data-total")) if keys else -1

    wait(browser, lambda d: new_connections(d) >= 3)
    https_requests(port, 4)  # while the page is open: the chart takes them without a reload
    wait(browser, lambda d: new_connections(d) >= 7, timeout=20)
    box = browser.find_element(By.ID, section)
    assert box.find_elements(By.CSS_SELECTOR, "svg.chart polyline")
    wire = float(box.find_element(By.CSS_SELECTOR, '.key[data-series="wire"]').get_attribute("data-total"))
    billed = float(box.find_element(By.CSS_SELECTOR, '.key[data-series="billed"]').get_attribute("data-total"))
    assert wire > billed > 0  # handshakes and record overhead are on the wire, not in the bill
    assert "LCU estimate" in box.text  # tencent-clb bills by LCU
    screenshot(browser, "traffic")

    open_page(browser, lab, "/connections")
    Select(browser.find_element(By.NAME, "listener")).select_by_value(f"127.0.0.1:{port}")  # filters by address:port
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait(browser, lambda d: "listener=" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#connections-table tbody tr")
    assert len(rows) >= 7 and all(f":{port}" in r.text and "Success" in r.text for r in rows)
    assert all("TLSv1.3" in r.text or "TLSv1.2" in r.text for r in rows)
    screenshot(browser, "connections")
    Select(browser.find_element(By.NAME, "tls_verify_status")).select_by_value("Success")
    Select(browser.find_element(By.NAME, "resumed")).select_by_value("false")
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait(browser, lambda d: "resumed=false" in d.current_url)
    rows[0:0] = []
    browser.find_element(By.CSS_SELECTOR, "#connections-table tbody tr a").click()
    wait(browser, lambda d: d.find_elements(By.ID, "byte-split"))
    split = {r.find_elements(By.TAG_NAME, "td")[0].text: [c.text for c in r.find_elements(By.TAG_NAME, "td")[1:]]
             for r in browser.find_elements(By.CSS_SELECTOR, "#byte-split tbody tr")}
    handshake, overhead, payload, closure, wire_sum = (int(v.replace(",", "")) for v in split["both"])
    assert handshake > 0 and overhead > 0 and payload > 0 and wire_sum == handshake + overhead + payload + closure
    screenshot(browser, "connection-detail")


def test_deleting_a_certificate_in_use_is_refused_naming_the_listener(lab: RunningLab, browser: webdriver.Chrome) -> None:
    browser.get(state["cert_url"])
    browser.find_element(By.ID, "delete-certificate").click()
    wait(browser, lambda d: field_errors(d, "delete"))
    assert "CertificateInUse" in field_errors(browser, "delete") and "console-web" in field_errors(browser, "delete")
    assert any(c.name == "console-web" for c in lab.lab.store.list())


def test_rename_and_replace_show_refusals_on_their_fields(lab: RunningLab, browser: webdriver.Chrome) -> None:
    browser.get(state["cert_url"])
    fill(browser, "name", "not allowed!")  # aliyun-slb names: no spaces, no '!'
    browser.find_element(By.CSS_SELECTOR, "#rename-form button").click()
    wait(browser, lambda d: field_errors(d, "name"))
    assert "InvalidName" in field_errors(browser, "name")
    assert browser.find_element(By.NAME, "name").get_attribute("value") == "not allowed!"
    cert, key = rsa_chain("renewed.example")
    fill(browser, "cert", cert.decode())  # no key: the stored key is kept, and it does not match this certificate
    browser.find_element(By.CSS_SELECTOR, "#replace-form button").click()
    wait(browser, lambda d: field_errors(d, "key"))
    assert "KeyCertificateMismatch" in field_errors(browser, "key")
    fill(browser, "key", key.decode())
    browser.find_element(By.CSS_SELECTOR, "#replace-form button").click()
    wait(browser, lambda d: "Replaced" in d.find_element(By.TAG_NAME, "main").text)
    facts = browser.find_element(By.ID, "facts").text
    assert "renewed.example" in facts and re.search(r"Revision\s+2", facts)
    listener = lab.lab.get_listener(state["port"])  # the listener takes revision 2 after its activation delay
    wait(browser, lambda d: listener.status == "running" and 2 in listener.active.revisions.values(), timeout=20)


def test_the_tls_policy_page_probes_what_really_negotiates(lab: RunningLab, browser: webdriver.Chrome) -> None:
    port = state["port"]
    open_page(browser, lab, "/policy")
    browser.find_element(By.ID, f"probe-{port}").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#policy-{port} .probe-result"), timeout=60)
    section = browser.find_element(By.ID, f"policy-{port}")
    assert section.find_element(By.CSS_SELECTOR, ".probe-result").get_attribute("data-match") == "true"
    matrix = section.find_element(By.CSS_SELECTOR, "table.matrix").text
    assert "ECDHE-RSA-AES128-GCM-SHA256" in matrix and "negotiates" in matrix
    assert "ECDHE-RSA-AES128-SHA " not in matrix + " "  # not in the custom cipher string
    screenshot(browser, "policy")


def test_changing_the_listener_keeps_what_the_form_does_not_show(lab: RunningLab, browser: webdriver.Chrome) -> None:
    port = state["port"]
    listener = lab.lab.get_listener(port)
    before = listener.spec
    open_page(browser, lab, "/listeners")
    browser.find_element(By.CSS_SELECTOR, f'a[href="/listeners/{port}/edit"]').click()
    wait(browser, lambda d: d.find_elements(By.ID, "listener-form"))
    # The form shows the listener as it is: its custom policy, its SNI domain.
    assert browser.find_element(By.NAME, "sni_domain_0").get_attribute("value") == "ecdsa.lbsim.test"
    assert Select(browser.find_element(By.NAME, "tls_policy")).first_selected_option.get_attribute("value") == "custom"
    browser.find_element(By.NAME, "http2").click()
    browser.find_element(By.ID, "listener-submit").click()
    wait(browser, lambda d: "Changed" in d.find_element(By.TAG_NAME, "main").text)
    wait(browser, lambda d: listener.status == "running" and listener.active.spec.http2, timeout=20)
    after = listener.active.spec
    assert after.health_check == before.health_check and after.headers == before.headers
    assert after.policy == before.policy and after.sni == before.sni and after.idle_timeout == 30


def test_a_backend_failing_health_checks_shows_on_the_listener(lab: RunningLab, browser: webdriver.Chrome) -> None:
    open_page(browser, lab, "/listeners")

    # The backends table is refreshed every second: between its old rows and its new ones there is no web-1.
    def web1_row(d: webdriver.Chrome) -> Any:
        return next((r for r in d.find_elements(By.CSS_SELECTOR, "#backends-table tbody tr") if r.text.startswith("web-1")), None)

    def web1(d: webdriver.Chrome) -> str:
        row = web1_row(d)
        return row.text if row is not None else ""

    def press(label: str) -> None:
        def attempt(d: webdriver.Chrome) -> bool:  # a row replaced before the click: found again (wait retries)
            row = web1_row(d)
            if row is None:
                return False
            row.find_element(By.XPATH, f".//button[text()='{label}']").click()
            return True

        wait(browser, attempt)

    press("Fail health checks")
    wait(browser, lambda d: "failing health checks" in web1(d))
    # The listeners' health checks notice; the table (refreshed every second) shows it.
    wait(browser, lambda d: "unhealthy web-1" in d.find_element(By.ID, "listeners-table").text, timeout=20)
    press("Pass health checks")
    wait(browser, lambda d: "unhealthy" not in d.find_element(By.ID, "listeners-table").text, timeout=20)


def test_stopping_and_deleting_the_listener_from_the_list(lab: RunningLab, browser: webdriver.Chrome) -> None:
    port = state["port"]
    open_page(browser, lab, "/listeners")
    click(browser, f"stop-{port}")
    wait(browser, lambda d: "Stopped." in d.find_element(By.TAG_NAME, "main").text)
    assert lab.lab.get_listener(port).status == "stopped"
    click(browser, f"delete-{port}")
    wait(browser, lambda d: "Deleted." in d.find_element(By.TAG_NAME, "main").text)
    assert not lab.lab.registry.on_port(port)
    browser.get(state["cert_url"])
    browser.find_element(By.ID, "delete-certificate").click()  # nothing uses it now
    wait(browser, lambda d: "Deleted." in d.find_element(By.TAG_NAME, "main").text)
    assert not any(c.name == "console-web" for c in lab.lab.store.list())


def test_load_balancers_made_through_the_alibaba_api_show_with_their_listeners(
        lab: RunningLab, browser: webdriver.Chrome, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's load balancers are the lab's: one created with Alibaba's SDK against this lab shows with its
    id, name (escaped), vendor, address and its listener's status; the lab file's listeners sit under lb-lbsim."""
    from alibabacloud_slb20140515 import models as m
    from alibabacloud_slb20140515.client import Client
    from alibabacloud_tea_openapi.models import Config

    from simulator.certs import LabPKI
    from simulator.net import free_port

    api = lab.attach_vendor_apis()["aliyun-slb"]
    slb = Client(Config(access_key_id=api["access_key_id"], access_key_secret=api["access_key_secret"],
                        endpoint=api["https_endpoint"], protocol="https", region_id=api["region"],
                        ca=lab.endpoints["ca"]))
    issued = LabPKI(name="console lb test CA").server("lb.example.test")
    cert = slb.upload_server_certificate(m.UploadServerCertificateRequest(
        server_certificate=issued.chain_pem.decode(), private_key=issued.key_pem.decode(),
        server_certificate_name="console-lb", region_id=api["region"])).body
    lb = slb.create_load_balancer(m.CreateLoadBalancerRequest(region_id=api["region"],
                                                              load_balancer_name=f"shop {SCRIPT}")).body
    port = free_port(lb.address)
    slb.create_load_balancer_httpslistener(m.CreateLoadBalancerHTTPSListenerRequest(
        load_balancer_id=lb.load_balancer_id, listener_port=port, bandwidth=-1, sticky_session="off",
        server_certificate_id=cert.server_certificate_id))
    try:
        open_page(browser, lab, "/listeners")
        no_alert(browser)

        def row_of(d: webdriver.Chrome, lb_id: str) -> Any:
            rows = d.find_elements(By.CSS_SELECTOR, "#loadbalancers-table tbody tr")
            return next((r for r in rows if r.find_element(By.TAG_NAME, "code").text == lb_id), None)

        row = wait(browser, lambda d: row_of(d, lb.load_balancer_id))
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        assert cells[1] == f"shop {SCRIPT}" and cells[2].startswith("aliyun-slb") and "vendor API" in cells[2]
        assert cells[3] == lb.address and lb.address != "127.0.0.1"
        assert f"port {port}" in cells[4] and "stopped" in cells[4]  # Alibaba creates listeners stopped
        default = wait(browser, lambda d: row_of(d, "lb-lbsim"))
        assert default.find_elements(By.TAG_NAME, "td")[3].text == "127.0.0.1"
        assert all(l.name in default.text for l in lab.lab.registry.listeners.values() if l.spec.lb_id == "lb-lbsim")
        assert "created and deleted through the vendor APIs" in browser.find_element(By.TAG_NAME, "main").text

        # started through the API: the part refreshes from configuring (with its countdown) to running. The
        # activation is the vendor's ceiling (three minutes, 3.6 s here), not a draw that may be under the
        # page's one-second refresh.
        monkeypatch.setattr(lab.lab, "activation_delay", lambda spec: 180 * lab.lab.config.time_scale)
        slb.start_load_balancer_listener(m.StartLoadBalancerListenerRequest(
            load_balancer_id=lb.load_balancer_id, listener_port=port))
        wait(browser, lambda d: row_of(d, lb.load_balancer_id).find_elements(
            By.CSS_SELECTOR, f'li[data-port="{port}"] .countdown'))
        wait(browser, lambda d: row_of(d, lb.load_balancer_id).find_elements(
            By.CSS_SELECTOR, f'li[data-port="{port}"] [data-status="running"]'), timeout=30)
        screenshot(browser, "loadbalancers")
    finally:
        slb.delete_load_balancer(m.DeleteLoadBalancerRequest(load_balancer_id=lb.load_balancer_id))
        slb.delete_server_certificate(m.DeleteServerCertificateRequest(
            server_certificate_id=cert.server_certificate_id))
    open_page(browser, lab, "/listeners")
    assert lb.load_balancer_id not in browser.find_element(By.ID, "loadbalancers").text


# ---- the token and CSRF ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(lab: RunningLab) -> Iterator[ConsoleServer]:
    """A second console on the same lab, behind a token (what `api.token` gives a lab's console)."""
    console = ConsoleServer(lab.lab, token="s3cret-token")
    lab.call(console.start())
    yield console
    lab.call(console.stop())


def test_a_token_console_needs_a_login_once_then_a_cookie(guarded: ConsoleServer, browser: webdriver.Chrome) -> None:
    browser.delete_all_cookies()
    browser.get(guarded.url + "/certificates")
    wait(browser, lambda d: "/login" in d.current_url)
    browser.find_element(By.NAME, "token").send_keys("wrong")
    browser.find_element(By.CSS_SELECTOR, "main button").click()
    wait(browser, lambda d: field_errors(d, "token"))
    browser.find_element(By.NAME, "token").send_keys("s3cret-token")
    browser.find_element(By.CSS_SELECTOR, "main button").click()
    wait(browser, lambda d: d.current_url.endswith("/certificates"))
    assert browser.find_elements(By.ID, "upload-form")
    browser.delete_all_cookies()
    browser.get(guarded.url + "/listeners?token=s3cret-token")  # the token in a URL, once
    wait(browser, lambda d: d.current_url.endswith("/listeners"))
    assert "token" not in browser.current_url and browser.find_elements(By.ID, "listeners")


def test_posts_need_the_csrf_token_and_state_changes_need_post(lab: RunningLab) -> None:
    url = lab.lab.console.url
    some = next(iter(lab.lab.registry.listeners.values()))
    request = urllib.request.Request(f"{url}/listeners/{some.port}/stop", data=b"csrf=forged", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403 and some.status == "running"
    with pytest.raises(urllib.error.HTTPError) as wrong_method:
        urllib.request.urlopen(f"{url}/listeners/{some.port}/stop", timeout=10)
    assert wrong_method.value.code == 405 and some.status == "running"
    page = urllib.request.urlopen(f"{url}/listeners", timeout=10)
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert re.search(r'name="csrf" value="[0-9a-f]{64}"', page.read().decode())


def test_read_only_pages_are_whole_without_javascript(lab: RunningLab) -> None:
    """What a client without JavaScript gets: every read-only page rendered on the server, charts included."""
    url = lab.lab.console.url
    expect = {"/certificates": 'id="certificates"', "/listeners": 'id="listeners-table"', "/traffic": "<polyline",
              "/connections": 'id="connections-table"', "/policy": 'class="matrix"',
              "/certificates/check": 'id="upload-form"'}
    for path, marker in expect.items():
        with urllib.request.urlopen(url + path, timeout=10) as page:
            assert page.status == 200 and marker in page.read().decode(), path
