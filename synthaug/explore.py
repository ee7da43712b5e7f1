"""``synthaug explore --checkpoint DIR``: a local page to conjure cells from a trained generator.

Pick a class and a seed, move sliders over latent directions and watch the samples change; interpolate
between two cells. The directions depend on the model:

- InfoGAN: its continuous codes (each slider sets one code in [-1, 1]) and its categorical code;
- a VAE given training images (``--data``): the principal directions of their codes (in standard
  deviations) and the concept vector of each other class minus the chosen one (mean code difference);
- every model: a few fixed random orthonormal directions of the latent prior.

The server listens on the loopback interface only (127.0.0.1 / ::1): it is a local tool, not a service.
"""
from __future__ import annotations

import errno
import io
import json
import math
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import torch

from . import latent

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Direction:
    key: str            # the query parameter
    label: str          # what the page shows
    vector: torch.Tensor | None = None  # added to the code, times the slider value (None: an InfoGAN code slot)
    slot: int | None = None             # InfoGAN: index of the continuous code
    low: float = -3.0
    high: float = 3.0


class Explorer:
    """The sampling side of the page: directions and rendering, independent of HTTP (testable alone)."""

    def __init__(self, gen: Any, *, classes: list[str] | None = None, images: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None, n: int = 8, random_directions: int = 3, seed: int = 0) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 64:
            raise ValueError(f"n={n!r}: show between 1 and 64 samples")
        self.gen = gen.eval()
        self.n = n
        self.classes = list(classes) if classes else [str(c) for c in range(gen.num_classes)]
        if len(self.classes) != gen.num_classes:
            raise ValueError(f"{len(self.classes)} class names for a generator of {gen.num_classes} classes")
        self.lock = threading.Lock()
        self.directions: list[Direction] = []
        self.categories = 0
        if getattr(gen, "generator_name", "") == "infogan":
            layout = gen.noise_layout()
            cont = layout["continuous"]
            for i in range(cont.stop - cont.start):
                self.directions.append(Direction(f"code{i}", f"InfoGAN continuous code {i}", slot=i, low=-1, high=1))
            self.categories = int(getattr(gen, "n_categorical", 0))
        if images is not None and latent.has_encoder(gen):
            if labels is None or len(labels) != len(images):
                raise ValueError("give one label per image for the VAE directions")
            vectors, std = latent.principal_directions(gen, images, labels, k=4)
            for i, (v, s) in enumerate(zip(vectors, std)):
                self.directions.append(Direction(f"pc{i}", f"principal direction {i + 1} (1 = one sd)", v * float(s)))
            for k in range(1, gen.num_classes):  # what tells class k from class 0, e.g. infected - healthy
                if (labels == k).any() and (labels == 0).any():
                    vec = latent.concept_vector(gen, images, labels, target=k, source=0)
                    self.directions.append(Direction(f"concept{k}", f"concept: {self.classes[k]} - {self.classes[0]}",
                                                     vec, low=-2, high=2))
        if random_directions:
            dim = gen.latent_dim
            g = torch.Generator().manual_seed(seed)
            basis, _ = torch.linalg.qr(torch.randn(dim, min(random_directions, dim), generator=g))
            for i in range(basis.shape[1]):
                # a unit direction of the N(0, I) prior: moving 3 is a 3-sd change along it
                self.directions.append(Direction(f"rand{i}", f"random latent direction {i + 1}", basis[:, i]))
        self._by_key = {d.key: d for d in self.directions}

    def info(self) -> dict[str, Any]:
        return {"generator": getattr(self.gen, "generator_name", type(self.gen).__name__), "classes": self.classes,
                "image_size": self.gen.image_size, "n": self.n, "categories": self.categories,
                "directions": [{"key": d.key, "label": d.label, "low": d.low, "high": d.high,
                                "absolute": d.slot is not None} for d in self.directions]}

    def codes(self, seed: int, values: dict[str, float], category: int | None = None) -> torch.Tensor:
        noise = self.gen.sample_noise(self.n, generator=torch.Generator().manual_seed(seed))
        for key, value in values.items():
            d = self._by_key.get(key)
            if d is None:
                raise ValueError(f"unknown direction {key!r}; this model has {sorted(self._by_key)}")
            if not math.isfinite(value) or not d.low <= value <= d.high:
                raise ValueError(f"{key}={value!r}: must be within [{d.low:g}, {d.high:g}]")
            if d.slot is not None:  # every sample keeps its own z and other codes; this code is set
                noise = noise.clone()
                noise[:, self.gen.noise_layout()["continuous"].start + d.slot] = value
            else:
                noise = noise + value * d.vector.to(noise)
        if category is not None:
            if not 0 <= category < max(self.categories, 1) or not self.categories:
                raise ValueError(f"category={category}: this model has {self.categories} categorical codes")
            noise = self.gen.with_codes(noise, {"categorical": category})
        return noise

    def _label(self, label: int) -> torch.Tensor:
        if not 0 <= label < self.gen.num_classes:
            raise ValueError(f"label={label}: choose a class in [0, {self.gen.num_classes})")
        return torch.full((self.n,), label, dtype=torch.long)

    def render(self, label: int, seed: int, values: dict[str, float] | None = None,
               category: int | None = None) -> torch.Tensor:
        """``n`` uint8 images of class ``label`` from the noise of ``seed`` moved along the directions."""
        y = self._label(label)
        codes = self.codes(seed, values or {}, category)
        with self.lock:
            return latent.decode(self.gen, codes, y)

    def interpolate(self, label: int, seed_a: int, seed_b: int, steps: int = 8) -> torch.Tensor:
        if not 2 <= steps <= 32:
            raise ValueError(f"steps={steps}: between 2 and 32")
        self._label(label)
        za = self.gen.sample_noise(1, generator=torch.Generator().manual_seed(seed_a))[0]
        zb = self.gen.sample_noise(1, generator=torch.Generator().manual_seed(seed_b))[0]
        with self.lock:
            return latent.interpolate(self.gen, za, zb, label=label, steps=steps)


def png_bytes(images: torch.Tensor, *, scale: int = 3) -> bytes:
    from PIL import Image

    from .viz import image_grid

    grid = Image.fromarray(image_grid(images, nrow=len(images)))
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    return buf.getvalue()


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>synthaug explore</title>
<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:1.5em auto;padding:0 1em;color:#222}
label{display:inline-block;min-width:17em}.row{margin:.35em 0}img{image-rendering:pixelated;border:1px solid #ccc;
max-width:100%;min-height:20px}output{display:inline-block;width:3.5em;text-align:right}#error{color:#b00}</style>
</head><body>
<h1>synthaug explore: <span id="name"></span></h1>
<div class="row"><label for="label">class</label><select id="label"></select></div>
<div class="row"><label for="seed">seed (which cells)</label><input id="seed" type="number" value="0" min="0">
<button id="another">other cells</button></div>
<div class="row" id="category-row" hidden><label for="category">InfoGAN categorical code</label>
<select id="category"></select></div>
<div id="sliders"></div>
<div class="row"><button id="reset">reset sliders</button></div>
<p><img id="samples" alt="samples"></p>
<h2>Interpolate between two cells</h2>
<div class="row"><label>from seed / to seed</label><input id="seed-a" type="number" value="0">
<input id="seed-b" type="number" value="1"> <button id="go">interpolate</button></div>
<p><img id="interp" alt="interpolation"></p>
<p id="error"></p>
<script>
const $ = id => document.getElementById(id);
let info = null, timer = null;
function query() {
  const p = new URLSearchParams({label: $("label").value, seed: $("seed").value});
  for (const d of info.directions) { const v = $("dir-" + d.key).value; if (d.absolute || Number(v) !== 0) p.set(d.key, v); }
  if (info.categories && $("category").value !== "") p.set("category", $("category").value);
  return p.toString();
}
const latest = {};  // per image: the newest request; older answers arriving late are dropped
function show(img, url) {
  const ticket = (latest[img.id] || 0) + 1; latest[img.id] = ticket;
  fetch(url).then(r => r.ok ? r.blob() : r.text().then(t => { throw new Error(t); }))
    .then(b => { if (latest[img.id] !== ticket) return;
                 img.src = URL.createObjectURL(b); img.dataset.url = url; $("error").textContent = ""; })
    .catch(e => { $("error").textContent = e.message; });
}
function update() { clearTimeout(timer); timer = setTimeout(() => show($("samples"), "/api/sample?" + query()), 120); }
fetch("/api/info").then(r => r.json()).then(i => {
  info = i; $("name").textContent = i.generator + " (" + i.image_size + " px)";
  i.classes.forEach((c, k) => $("label").add(new Option(c, k)));
  if (i.categories) { $("category-row").hidden = false; $("category").add(new Option("random", ""));
    for (let k = 0; k < i.categories; k++) $("category").add(new Option(String(k), k)); }
  for (const d of i.directions) {
    const row = document.createElement("div"); row.className = "row";
    const label = document.createElement("label"); label.htmlFor = "dir-" + d.key; label.textContent = d.label;
    const input = Object.assign(document.createElement("input"), {type: "range", id: "dir-" + d.key, min: d.low,
      max: d.high, step: 0.1, value: 0});
    const out = Object.assign(document.createElement("output"), {id: "out-" + d.key, textContent: "0"});
    row.append(label, input, out);
    $("sliders").appendChild(row);
    $("dir-" + d.key).addEventListener("input", e => { $("out-" + d.key).textContent = e.target.value; update(); });
  }
  for (const id of ["label", "seed", "category"]) $(id).addEventListener("change", update);
  $("another").onclick = () => { $("seed").value = Number($("seed").value) + 1; update(); };
  $("reset").onclick = () => { for (const d of info.directions) { $("dir-" + d.key).value = 0;
    $("out-" + d.key).textContent = "0"; } update(); };
  $("go").onclick = () => show($("interp"), "/api/interpolate?" + new URLSearchParams({label: $("label").value,
    a: $("seed-a").value, b: $("seed-b").value, steps: 10}));
  update();
});
</script></body></html>
"""


def query_number(value: Any, name: str, *, kind: type = int) -> Any:
    """The query parameter ``name`` as an ``int`` (or ``float``); a ``ValueError`` that names it and its value."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"query parameter {name}={value!r} is not {what}; give e.g. {name}=1") from None


def make_handler(explorer: Explorer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "synthaug-explore"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per request is noise here
            return None

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            # DNS rebinding: a page of another site that resolves its name to 127.0.0.1 sends its own Host
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
            if host not in LOOPBACK:
                return self._send(HTTPStatus.FORBIDDEN, b"explore answers requests for localhost only",
                                  "text/plain")
            url = urlparse(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                if url.path in ("/", "/index.html"):
                    return self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
                if url.path == "/api/info":
                    return self._send(HTTPStatus.OK, json.dumps(explorer.info()).encode(), "application/json")
                if url.path == "/api/sample":
                    label, seed = query_number(q.pop("label", 0), "label"), query_number(q.pop("seed", 0), "seed")
                    category = q.pop("category", None)
                    values = {k: query_number(v, k, kind=float) for k, v in q.items()}
                    images = explorer.render(label, seed, values,
                                             None if category is None else query_number(category, "category"))
                    return self._send(HTTPStatus.OK, png_bytes(images), "image/png")
                if url.path == "/api/interpolate":
                    label, a, b, steps = (query_number(q.get(k, d), k) for k, d in
                                          (("label", 0), ("a", 0), ("b", 1), ("steps", 8)))
                    images = explorer.interpolate(label, a, b, steps)
                    return self._send(HTTPStatus.OK, png_bytes(images), "image/png")
                return self._send(HTTPStatus.NOT_FOUND, f"no page {url.path}".encode(), "text/plain")
            except ValueError as err:
                return self._send(HTTPStatus.BAD_REQUEST, str(err).encode(), "text/plain; charset=utf-8")

    return Handler


def make_server(explorer: Explorer, *, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """The HTTP server of ``explorer`` on ``host:port`` (0: any free port); loopback hosts only."""
    if host not in LOOPBACK:
        raise ValueError(f"--host {host!r}: explore serves the loopback interface only ({', '.join(LOOPBACK)}); "
                         "use an SSH tunnel to reach it from another machine")
    server_cls = ThreadingHTTPServer
    if ":" in host:
        import socket

        class V6(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_cls = V6
    try:
        server = server_cls((host, port), make_handler(explorer))
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        raise OSError(f"port {port} on {host} is in use (another explore or server?); give another with --port, "
                      f"e.g. --port {port + 1}, or --port 0 for any free port") from None
    import ipaddress

    if not ipaddress.ip_address(server.server_address[0]).is_loopback:  # e.g. a hosts file mapping localhost away
        server.server_close()
        raise ValueError(f"--host {host!r} resolved to {server.server_address[0]}, not a loopback address")
    server.daemon_threads = True
    return server
