"""Model cards of targets, rendered from ``model_cards/template.md`` with huggingface_hub's `ModelCard`."""

from __future__ import annotations

import os

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE = os.path.join(os.path.dirname(__file__), "assets", "model_card_template.md")
DRIVEN_METRICS = (
    "identity_to_target",
    "identity_to_source",
    "identity_source_to_target",
    "mouth_opening_correlation",
    "eye_openness_correlation",
    "head_pose_error_deg",
    "output_jitter_iod",
    "source_jitter_iod",
    "torso_novel_frames",
)


def render_model_card(
    name: str,
    metrics: dict,
    training: dict,
    dataset: dict,
    repo_id: str | None = None,
    consent: str | None = None,
    provenance: str | None = None,
    driven: list[dict] | None = None,
    baselines: dict | None = None,
    sheet: str | None = None,
    limits: str | None = None,
) -> ModelCard:
    """A card with a model-index of the validation metrics, the training configuration and the data's origin.

    driven: `dvp evaluate` results of other people driving the target (``evaluate.driven``), one per source.
    baselines: ``{label: scores}`` of `evaluate.self_reenactment` (the model, the mean and the nearest
    training frame), shown side by side. sheet: a contact sheet's path or URL. limits: what this target
    does badly, in a sentence or two.
    """
    driven = [{k: v for k, v in d.items() if k in DRIVEN_METRICS or k == "source"} for d in driven or []]
    results = [
        EvalResult(
            task_type="image-to-image",
            task_name="Self-reenactment (validation frames)",
            dataset_type="video",
            dataset_name=dataset.get("source", "target video"),
            dataset_split="validation",
            metric_type=k,
            metric_name=k.upper() if k in ("psnr", "ssim") else k,
            metric_value=float(v),
        )
        for k, v in metrics.items()
    ]
    for d in driven:
        src = os.path.basename(d["source"])
        results += [
            EvalResult(
                task_type="image-to-image",
                task_name=f"Reenactment driven by {src}",
                dataset_type="video",
                dataset_name=src,
                dataset_config=src,  # model-index groups results by task type and dataset config/split
                metric_type=k,
                metric_name=k,
                metric_value=float(v),
            )
            for k, v in d.items()
            if k != "source"
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
        driven=driven,
        baselines=baselines,
        sheet=sheet,
        limits=limits,
        training=training,
        dataset=dataset,
        consent=consent
        or "The person in the training video must have agreed to this use. For the shared demo "
        "clips see their origin below; the model is a demonstration of the technique only.",
        provenance=provenance or f"Trained on `{dataset.get('source', 'a target video')}`.",
    )


SCORE_KEYS = ("psnr", "ssim", "psnr_face", "ssim_face", "psnr_mouth", "ssim_mouth")


def self_reenactment_card(name: str, dataset: dict, sr: dict, training: dict, **kwargs) -> ModelCard:
    """`render_model_card` from `evaluate.self_reenactment`'s result ``sr``: its scores and those of the two
    baselines (the mean and the nearest training frame) in the model-index and side by side; ``kwargs`` as for
    `render_model_card` (``repo_id``, ``consent``, ``provenance``, ``driven``, ``sheet``, ``limits``)."""
    metrics = {k: round(sr[k], 4) for k in SCORE_KEYS}
    for label in ("mean_frame", "nearest_frame"):
        metrics.update({f"{label}_{k}": round(sr[f"baseline_{label}"][k], 4) for k in ("psnr", "ssim")})
    baselines = {
        "this model": sr,
        "mean training frame": sr["baseline_mean_frame"],
        "nearest training frame": sr["baseline_nearest_frame"],
    }
    return render_model_card(name, metrics, training, dataset, baselines=baselines, **kwargs)
