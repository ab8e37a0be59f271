// Stylus: small UI helpers. Hover hints through the web UI's own `titles` table, and a click on a picked
// LoRA in the preview copies its <lora:...> tag.
(function () {
    const hints = {
        "Pick LoRAs for the prompt": "Stylus retrieves LoRAs from your library for this prompt, composes them per task and writes <lora:...> tags and trigger words into the prompt.",
        "Masking (a seeded LoRA subset per image)": "per image: each image gets its own seeded subset (batch size 1) or one per batch; same for all images: one subset for the whole job; off: every picked LoRA in every image.",
        "Preview picks": "Show which LoRAs Stylus would pick for the current prompt, and why, without generating.",
        "Content subtraction λ": "How much of the reference's content (described in the box above) is subtracted from its CLIP embedding.",
        "Style strength": "Scale of the reference's style tokens in the chosen blocks (0 = off).",
        "Blocks": "style: SDXL up_blocks.0.attentions.1 (InstantStyle); style+layout adds down_blocks.2.attentions.1; all: plain IP-Adapter.",
    };

    function addHints() {
        if (typeof titles === "object" && titles !== null) {
            Object.assign(titles, hints);
        }
    }

    function copyTag(event) {
        const item = event.target.closest("[data-stylus-tag]");
        if (!item || !navigator.clipboard) {
            return;
        }
        navigator.clipboard.writeText(item.getAttribute("data-stylus-tag"));
        item.classList.add("stylus-copied");
        setTimeout(() => item.classList.remove("stylus-copied"), 800);
    }

    if (typeof onUiLoaded === "function") {
        onUiLoaded(addHints);
    }
    document.addEventListener("click", copyTag);
})();
