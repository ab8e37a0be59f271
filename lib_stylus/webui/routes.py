"""HTTP routes (also under --nowebui): GET /stylus/v1/status, POST /stylus/v1/refresh,
POST /stylus/v1/compose."""
from __future__ import annotations

from pydantic import BaseModel

from .lora_job import drop_unknown
from .service import SERVICE


class ComposeRequest(BaseModel):
    prompt: str
    base: str | None = None        # sd1 | sd2 | sdxl; default: the loaded checkpoint's
    max_adapters: int = 4
    composer: str = "local"
    seed: int = 0
    negative_prompt: str = ""


def register(app) -> None:
    @app.get("/stylus/v1/status")
    def status():
        return SERVICE.status

    @app.post("/stylus/v1/refresh")
    def refresh(wait: bool = False):
        # the user's own refresh: what failed this session (the sentence encoder's download) is tried again
        return SERVICE.refresh(wait=wait, retry=True)

    @app.post("/stylus/v1/compose")
    def compose(req: ComposeRequest):
        comp = drop_unknown(SERVICE.compose(req.prompt, req.base, req.max_adapters, req.composer))
        res = comp.rewrite(req.prompt, req.seed, req.negative_prompt)
        return {**comp.to_dict(req.seed), "prompt": res.prompt, "negative_prompt": res.negative_prompt,
                "picked": comp.stems, "notes": list(res.notes)}
