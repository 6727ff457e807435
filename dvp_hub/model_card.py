"""Model cards of targets, rendered from ``model_cards/template.md`` with huggingface_hub's `ModelCard`."""

from __future__ import annotations

import os

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE = os.path.join(os.path.dirname(__file__), "assets", "model_card_template.md")


def render_model_card(
    name: str,
    metrics: dict,
    training: dict,
    dataset: dict,
    repo_id: str | None = None,
    consent: str | None = None,
    provenance: str | None = None,
) -> ModelCard:
    """A card with a model-index of the validation metrics, the training configuration and the data's origin."""
    results = [
        EvalResult(
            task_type="image-to-image",
            task_name="Self-reenactment (validation frames)",
            dataset_type="video",
            dataset_name=dataset.get("source", "target video"),
            metric_type=k,
            metric_name=k.upper() if k in ("psnr", "ssim") else k,
            metric_value=float(v),
        )
        for k, v in metrics.items()
    ]
    data = ModelCardData(
        license="mit",
        library_name="dvp_hub",
        tags=["deep-video-portraits", "video-to-video", "face-reenactment", "synthetic-media"],
        model_name=name,
        eval_results=results or None,
    )
    return ModelCard.from_template(
        data,
        template_path=TEMPLATE,
        name=name,
        repo_id=repo_id or name,
        metrics=metrics,
        training=training,
        dataset=dataset,
        consent=consent
        or "The person in the training video must have agreed to this use. For the shared demo "
        "clips see their origin below; the model is a demonstration of the technique only.",
        provenance=provenance or f"Trained on `{dataset.get('source', 'a target video')}`.",
    )
