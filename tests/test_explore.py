"""``synthaug explore``: directions, the HTTP API on loopback, and the page in headless Chromium."""
from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest
import torch

from synthaug.explore import Explorer, make_server
from synthaug.generators import create_generator


def _gen(name: str = "cvae-tiny", **options):
    torch.manual_seed(0)
    return create_generator(name, num_classes=2, image_size=32, channels=3, **options).eval()


@pytest.fixture()
def served():
    servers = []

    def start(explorer: Explorer) -> str:
        server = make_server(explorer, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        host, port = server.server_address[:2]
        return f"http://{host}:{port}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_api_serves_samples_that_follow_the_sliders(served):
    base = served(Explorer(_gen(), classes=["Parasitized", "Uninfected"], n=4))
    status, body = _get(base + "/api/info")
    assert status == 200
    import json

    info = json.loads(body)
    assert info["classes"] == ["Parasitized", "Uninfected"] and info["n"] == 4
    assert [d["key"] for d in info["directions"]] == ["rand0", "rand1", "rand2"]
    s0, plain = _get(base + "/api/sample?label=0&seed=3")
    s1, moved = _get(base + "/api/sample?label=0&seed=3&rand0=2.5")
    s2, again = _get(base + "/api/sample?label=0&seed=3")
    assert s0 == s1 == s2 == 200 and plain.startswith(b"\x89PNG")
    assert moved != plain and again == plain  # deterministic for a seed, changed by a slider
    status, body = _get(base + "/api/sample?label=0&seed=3&nope=1")
    assert status == 400 and b"unknown direction 'nope'" in body
    status, body = _get(base + "/api/sample?label=0&seed=3&rand0=99")
    assert status == 400 and b"within [-3, 3]" in body
    status, body = _get(base + "/api/sample?label=5")
    assert status == 400 and b"label=5" in body
    status, body = _get(base + "/api/interpolate?label=1&a=0&b=1&steps=6")
    assert status == 200 and body.startswith(b"\x89PNG")
    # another site's page whose name resolves to 127.0.0.1 (DNS rebinding) is refused
    request = urllib.request.Request(base + "/api/info", headers={"Host": "evil.example:80"})
    try:
        urllib.request.urlopen(request, timeout=30)
        raise AssertionError("a foreign Host header was served")
    except urllib.error.HTTPError as err:
        assert err.code == 403


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.org"])
def test_only_loopback_is_served(host):
    with pytest.raises(ValueError, match="loopback interface only"):
        make_server(Explorer(_gen()), host=host, port=0)


def test_vae_directions_from_training_images(malaria32):
    gen = _gen()
    images = torch.as_tensor(malaria32.train.images_tensor()[:64])
    labels = torch.as_tensor(malaria32.train.targets[:64]).long()
    if len(set(labels.tolist())) < 2:  # the first cells may all be of one class: take some of each
        idx = torch.cat([torch.nonzero(torch.as_tensor(malaria32.train.targets) == c).flatten()[:32] for c in (0, 1)])
        images, labels = malaria32.train.subset(idx.numpy()).images_tensor(), torch.as_tensor(
            malaria32.train.targets)[idx].long()
    ex = Explorer(gen, classes=malaria32.classes, images=images, labels=labels, n=3)
    keys = [d.key for d in ex.directions]
    assert keys[:4] == ["pc0", "pc1", "pc2", "pc3"] and "concept1" in keys
    concept = next(d for d in ex.directions if d.key == "concept1")
    assert concept.label == f"concept: {malaria32.classes[1]} - {malaria32.classes[0]}"
    assert not torch.equal(ex.render(0, 1), ex.render(0, 1, {"concept1": 2.0}))
    assert not torch.equal(ex.render(0, 1), ex.render(0, 1, {"pc0": -3.0}))


def test_infogan_code_sliders_set_the_code():
    gen = _gen("infogan", n_categorical=3, n_continuous=2)
    ex = Explorer(gen, n=4, random_directions=0)
    assert [d.key for d in ex.directions] == ["code0", "code1"] and ex.info()["categories"] == 3
    codes = ex.codes(0, {"code1": 0.7}, category=2)
    layout = gen.noise_layout()
    assert torch.allclose(codes[:, layout["continuous"]][:, 1], torch.full((4,), 0.7))
    assert torch.equal(codes[:, layout["categorical"]].argmax(1), torch.full((4,), 2))
    assert not torch.equal(ex.render(1, 0, {"code0": -1.0}), ex.render(1, 0, {"code0": 1.0}))
    with pytest.raises(ValueError, match="category=3"):
        ex.codes(0, {}, category=3)


def test_page_loads_and_a_slider_changes_the_image(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    base = served(Explorer(_gen(), classes=["Parasitized", "Uninfected"], n=4))
    browser.get(base + "/")
    wait = WebDriverWait(browser, 60)
    pixels = """const img = document.getElementById(arguments[0]);
        if (!img.complete || !img.naturalWidth || !img.src) return null;
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        c.getContext('2d').drawImage(img, 0, 0); return c.toDataURL();"""
    first = wait.until(lambda d: d.execute_script(pixels, "samples"))
    assert browser.find_element(By.ID, "name").text.startswith("cvae-tiny")
    sliders = browser.find_elements(By.CSS_SELECTOR, "input[type=range]")
    assert len(sliders) == 3
    url_before = browser.find_element(By.ID, "samples").get_attribute("data-url")
    sliders[0].send_keys(*[Keys.ARROW_RIGHT] * 15)  # 0 -> 1.5
    assert url_before and "rand0" not in url_before
    wait.until(lambda d: "rand0=1.5" in (d.find_element(By.ID, "samples").get_attribute("data-url") or ""))
    wait.until(lambda d: (d.execute_script(pixels, "samples") or first) != first)
    assert browser.find_element(By.ID, "out-rand0").text == "1.5"
    browser.find_element(By.ID, "go").click()
    wait.until(lambda d: d.execute_script(pixels, "interp"))
    assert browser.find_element(By.ID, "error").text == ""


def test_non_numeric_query_values_are_named(served):
    base = served(Explorer(_gen(), n=2))
    for query, named in [("label=abc", b"label='abc' is not an integer"), ("label=0&seed=x1", b"seed='x1'"),
                         ("label=0&rand0=big", b"rand0='big' is not a number")]:
        status, body = _get(base + "/api/sample?" + query)
        assert status == 400 and named in body and b"invalid literal" not in body, body
    status, body = _get(base + "/api/interpolate?steps=many")
    assert status == 400 and b"steps='many'" in body


def test_a_busy_port_is_named_with_what_to_do(tmp_path, capsys):
    from synthaug.cli import main

    busy = make_server(Explorer(_gen(), n=2), port=0)
    port = busy.server_address[1]
    try:
        with pytest.raises(OSError, match=rf"port {port} on 127.0.0.1 is in use.*--port 0"):
            make_server(Explorer(_gen(), n=2), port=port)
        _gen().save(tmp_path / "ckpt")
        assert main(["explore", "--checkpoint", str(tmp_path / "ckpt"), "--port", str(port)]) == 1
    finally:
        busy.server_close()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"port {port}" in err and "--port" in err and "Traceback" not in err
