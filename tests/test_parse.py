"""Tests for cache.parse: answers phrased the way GPT-4-class, Gemini and open models phrase them."""

from __future__ import annotations

import json
import time
import timeit

import pytest

from cache.parse import ParsedAnswer, parse_answer

# (answer text, expected label). Grouped by the style of model that writes this way.
GPT_STYLE = [
    (
        "I'm not able to determine with certainty whether an image is real or synthetic. However, based on "
        "the visual characteristics, this appears to be a genuine retinal fundus photograph. The optic disc "
        "is well defined and the vessels branch naturally.",
        "real",
    ),
    (
        "As an AI developed by OpenAI, I can't provide a medical diagnosis. However, I can describe the "
        "image: it shows a posteroanterior chest radiograph with clear lung fields.",
        "refused",
    ),
    (
        "### Real or Synthetic?\nThe image appears to be **synthetic**. The vessel pattern is unusually "
        "symmetric.\n\n### Interpretation\n- Modality: colour fundus photograph\n- No haemorrhages seen.",
        "synthetic",
    ),
    ("I'm sorry, I can't help with identifying or making assessments about medical images.", "refused"),
    (
        "Determining whether a medical image is real or synthetic can be challenging. That said, this image "
        "shows characteristics consistent with a real chest radiograph: natural quantum noise and "
        "anatomically plausible rib spacing.",
        "real",
    ),
    ("Based on my analysis, I would classify this image as **synthetic** (AI-generated).", "synthetic"),
    ("This image is likely AI-generated. Key indicators include overly smooth lung texture.", "synthetic"),
    ("It is impossible to tell with certainty if this image was synthetically generated.", "uncertain"),
    ("I cannot say with certainty whether this image is real or synthetic.", "uncertain"),
    (
        "As an AI language model, I can\u2019t determine if an image is real or synthetic without "
        "additional information.",
        "uncertain",
    ),
    ("I'm sorry, but I can't assist with analyzing medical images.", "refused"),
    ("I'm unable to assist with this request.", "refused"),
    ("I'm sorry, but I can't provide a determination on whether this image is real or synthetic.", "refused"),
    ("As an AI, I don't have the ability to determine whether an image is real or synthetic.", "uncertain"),
    ("It is not possible for me to determine whether this image is real.", "uncertain"),
    ("There's no definitive way to tell whether this image is real or synthetic.", "uncertain"),
    ("The image is too low resolution to determine whether it is real.", "uncertain"),
    ("I cannot provide medical diagnoses, but I can tell you this image appears synthetic.", "synthetic"),
    ("The image appears to be synthetic; however, I cannot be certain.", "synthetic"),
    ("I cannot provide medical diagnoses. Please consult a qualified ophthalmologist.", "refused"),
    (
        "As an AI, I cannot provide medical diagnoses, but this image appears to be a real chest X-ray "
        "with a normal cardiac silhouette.",
        "real",
    ),
    ("This appears to be a synthetic image, but I cannot be certain.", "synthetic"),
    ("It's hard to be certain, but this appears to be a real fundus photograph.", "real"),
]

GEMINI_STYLE = [
    (
        "**Classification:** Synthetic\n\n**Interpretation:**\n* **Modality:** Colour fundus photograph\n"
        "* **Findings:** Optic disc with an unusually sharp margin.",
        "synthetic",
    ),
    ("**Real or Synthetic:** Real\n\n**Reasoning:** The image exhibits natural sensor noise.", "real"),
    (
        "Based on the image provided, it appears to be a **real** chest X-ray.\n\n**Here's why:**\n"
        "* Natural variation in bone density\n* Realistic soft tissue shadows",
        "real",
    ),
    (
        "**Answer:** Synthetic\n\n**Explanation:** While the image looks realistic, the ribs merge.",
        "synthetic",
    ),
    ("This is a **synthetic** image. Here's a breakdown:\n\n* **Unnatural vessel branching**", "synthetic"),
    (
        "It is difficult to definitively determine whether this image is real or synthetic based solely on "
        "visual inspection. However, several features suggest it may be synthetic:\n\n* Overly uniform "
        "illumination\n* Repeating vessel patterns",
        "synthetic",
    ),
    ("**Classification:** AI-generated (diffusion model)", "synthetic"),
    ("## Verdict\n\nReal\n\n## Findings\nNormal macula.", "real"),
    ("* **Real or synthetic?** Synthetic\n* **Confidence:** Medium", "synthetic"),
    ("**Real or Synthetic:** Likely Synthetic", "synthetic"),
    ("Final answer: **Synthetic**", "synthetic"),
    (
        "While the image looks realistic, there are subtle artifacts suggesting it's AI-generated.",
        "synthetic",
    ),
    ("The image shows hallmarks of GAN generation, such as checkerboard artifacts.", "synthetic"),
]

OPEN_MODEL_STYLE = [
    ("Real.", "real"),
    ("Synthetic", "synthetic"),
    ("REAL", "real"),
    ("real", "real"),
    ("Fake.", "synthetic"),
    ("Not real.", "synthetic"),
    ("Uncertain. The image is too blurry to judge.", "uncertain"),
    ("Synthetic (AI-generated)", "synthetic"),
    ("1. Real\n2. Fundus photograph of a left eye, normal optic disc.", "real"),
    ("1. Synthetic\n2. Chest X-ray, PA view, no consolidation.", "synthetic"),
    ("The image is real.", "real"),
    ("This is a synthetic image.", "synthetic"),
    ("It's a genuine fundus photograph.", "real"),
    ("Real - this is an authentic fundus photograph from a patient.", "real"),
    (
        "The image is a fundus photograph of a human eye. It appears to be a real photograph, as it shows "
        "the optic disc, macula and blood vessels.",
        "real",
    ),
    ("Answer: REAL", "real"),
    ("Verdict \u2014 synthetic", "synthetic"),
    ("Classification: AI-generated", "synthetic"),
    ("Label: computer-generated", "synthetic"),
    ("THIS IMAGE IS SYNTHETIC.", "synthetic"),
    ("I believe this is an authentic chest radiograph.", "real"),
    ("Synthetic image of a retina with drusen.", "synthetic"),  # the first word is the verdict
    ("Real fundus photograph.", "real"),
    ("Authentic.", "real"),
    ("Not AI-generated.", "real"),
    ("Generated by DALL-E.", "synthetic"),
    ("The image is a computer-generated image of a human eye, specifically a retina.", "synthetic"),
    ("Prediction: 1 (synthetic)", "synthetic"),
    ("Is this image real or synthetic? Real.", "real"),
    ("No, it is real.", "real"),
    ("Unreal.", "unparseable"),
    (
        "I'm not able to provide medical advice or diagnose conditions. If you have concerns, consult a "
        "healthcare professional.",
        "refused",
    ),
]

NEGATIONS = [
    ("This is not synthetic.", "real"),
    ("There are no signs of AI generation.", "real"),
    ("The image does not appear to be generated by a diffusion model.", "real"),
    ("There is no evidence that this image is synthetic.", "real"),
    ("This is not a real photograph.", "synthetic"),
    ("It isn't real.", "synthetic"),
    ("It isn\u2019t real.", "synthetic"),  # curly apostrophe
    ("I don't think this image is synthetic.", "real"),
    ("There's nothing to suggest it isn't genuine.", "real"),  # double negation
    ("It's not unlikely that this image is synthetic.", "synthetic"),  # double negation
    ("It cannot be real: the vessels end abruptly.", "synthetic"),
    ("This is not a real photograph; it was generated by a GAN.", "synthetic"),
    ("The image is real, not synthetic.", "real"),
    ("Synthetic rather than real.", "synthetic"),
    ("There are no signs of AI generation; the noise is consistent with a real camera sensor.", "real"),
    ("The image is not blurry and appears real.", "real"),  # "not" does not reach past "and"
    ("There is no doubt this is synthetic.", "synthetic"),
    ("No question, this is a real radiograph.", "real"),
    ("This is definitely not a real image.", "synthetic"),
    ("It does not look real to me.", "synthetic"),
    ("This appears to be an authentic chest X-ray, not AI-generated.", "real"),
]

TRICKY = [
    ("Realistic-looking but synthetic.", "synthetic"),
    ("The image is highly realistic, with real-world lighting, but it is AI-generated.", "synthetic"),
    ("In real life, fundus photographs show more noise; this one is synthetic.", "synthetic"),
    ("Although it looks real at first glance, closer inspection reveals it is synthetic.", "synthetic"),
    ("Although it appears real, it is synthetic.", "synthetic"),
    (
        "This looks like a real retinal image... however, the vessel pattern suggests it was generated by "
        "a GAN.",
        "synthetic",
    ),
    # Two verdicts and no way to decide: a conflict for a person to look at, not a hedge (see test_provenance).
    ("The image appears real. The image appears synthetic.", "unparseable"),
    ("It could be real, but it might also be synthetic.", "uncertain"),
    ("It could be either, but I lean towards real.", "real"),
    ("It could be either.", "uncertain"),
    ("I am not sure whether this is real.", "uncertain"),
    ("Without more context, I cannot determine whether this is real or synthetic.", "uncertain"),
    ("It is impossible to tell whether this X-ray is real.", "uncertain"),
    (
        "This image appears to be synthetic. A real fundus photograph would show more sensor noise.",
        "synthetic",
    ),
    ("Synthetic images often show smooth textures. Real images have grain.", "unparseable"),  # generic only
    ("The image shows a real-world clinical setting with a fundus camera.", "unparseable"),
    ("Answer: Synthetic\nThe disc looks odd.\nFinal answer: Real", "real"),  # the last labelled verdict wins
    ("This is a real fundus image, not a synthetic one.", "real"),
    (
        "Is this image real or synthetic? It closely resembles a real photograph but is synthetic.",
        "synthetic",
    ),
    ("The optic disc and macula are normal. No haemorrhages or exudates.", "unparseable"),
    ("The image is neither clearly real nor clearly synthetic.", "uncertain"),
    ("The key question is whether this image is synthetic.", "unparseable"),  # an indirect question
    ("It is similar to a real fundus photograph in its colour balance.", "unparseable"),  # a comparison
    ("It's hard to say whether this is real or synthetic, but it seems real.", "real"),
    ("The image is likely real, although synthetic images can look very similar.", "real"),
    ("This image is synthetic, but it looks very real.", "synthetic"),  # "looks real" is about appearance
]

JSON_STYLE = [
    ('```json\n{"label": "synthetic", "confidence": 85, "interpretation": "Drusen."}\n```', "synthetic"),
    ('{"label": "real", "confidence": 0.7, "interpretation": "Normal chest X-ray."}', "real"),
    ('Sure! Here is the JSON:\n{"label": "real", "confidence": 0.6}', "real"),
    ('{"is_synthetic": true, "confidence": 0.9}', "synthetic"),
    ('{"is_synthetic": false}', "real"),
    ('{"classification": "AI-generated"}', "synthetic"),
    ('{"verdict": "Not synthetic"}', "real"),
    ('{"answer": "computer-generated"}', "synthetic"),
    ('{"label": "cannot determine"}', "uncertain"),
    ('{"label": "unknown", "confidence": 0.5}', "uncertain"),
    ('{"prediction": "GAN"}', "synthetic"),
    ('{"Real or Synthetic": "Real image"}', "real"),
    ('{"result": {"label": "natural"}}', "real"),  # nested one level
    ("{'label': 'Synthetic', 'confidence': 'high',}", "synthetic"),  # Python-style, trailing comma
    (
        '{"label": "synthetic", "confidence": 0.8, "interpretation": "Fundus image with',
        "synthetic",
    ),  # truncated
    ('{"label": "fundus", "interpretation": "This image appears to be AI-generated."}', "synthetic"),
    ('{"label": "maybe", "interpretation": "Normal retina."}', "unparseable"),
    ('[{"label": "real"}]', "real"),
]


@pytest.mark.parametrize(
    ("text", "label"), GPT_STYLE + GEMINI_STYLE + OPEN_MODEL_STYLE + NEGATIONS + TRICKY + JSON_STYLE
)
def test_label(text: str, label: str) -> None:
    assert parse_answer(text).label == label


@pytest.mark.parametrize(
    ("text", "finish_reason", "refusal", "label"),
    [
        ("", "SAFETY", None, "refused"),
        (None, "content_filter", None, "refused"),
        ("", "blockReason: PROHIBITED_CONTENT", None, "refused"),
        ("", "RECITATION", None, "refused"),
        ("   ", "Blocked", None, "refused"),
        (None, None, "I'm sorry, I can't assist with that.", "refused"),
        ("", "stop", None, "unparseable"),
        (None, None, None, "unparseable"),
        ("", "MAX_TOKENS", None, "unparseable"),
        ("The image shows a", "SAFETY", None, "refused"),  # partial text cut by a filter, no verdict
        ("Synthetic. The fundus", "SAFETY", None, "synthetic"),  # the verdict got out before the cut
        ("Real.", "stop", "", "real"),  # an empty refusal field is no refusal
    ],
)
def test_empty_and_blocked(
    text: str | None, finish_reason: str | None, refusal: str | None, label: str
) -> None:
    answer = parse_answer(text, finish_reason, refusal)
    assert answer.label == label
    if not (text or "").strip():  # nothing to read: no span, nothing for a person to review
        rule = "refusal" if label == "refused" else "empty"
        assert answer == ParsedAnswer(label, None, None, rule, None, False)


@pytest.mark.parametrize(
    ("text", "confidence"),
    [
        ('```json\n{"label": "synthetic", "confidence": 85, "interpretation": "x"}\n```', 0.85),
        ('{"label": "real", "confidence": 0.7}', 0.7),
        ('{"label": "real", "confidence": "85%"}', 0.85),
        ('{"label": "real", "confidence": "high"}', 0.9),
        ('{"label": "real", "confidence": "low"}', 0.3),
        ('{"label": "real", "confidence": 150}', None),  # out of range is not a confidence
        ('{"label": "real", "confidence": 1}', 1.0),
        ('{"label": "real"}', None),
        ("Real or synthetic: Real\nConfidence: 85%\nInterpretation: Normal fundus.", 0.85),
        ("I am 90% sure this is synthetic.", 0.9),
        ("I'm about 70% confident it is real.", 0.7),
        ("Synthetic. Confidence: 0.65", 0.65),
        ("Synthetic. Confidence: 8/10", 0.8),
        ("**Verdict:** Real (confidence: high)", 0.9),
        ("* **Real or synthetic?** Synthetic\n* **Confidence:** Medium", 0.6),
        ("I think this is real, with low confidence.", 0.3),
        ("This is a synthetic image.", None),
        ("Real. 30% of patients with this finding progress.", None),  # a percentage that is not confidence
        ("I think it's real but I'm not 100% sure.", None),
        ("This is not real. I am 90% sure.", 0.9),  # the "not" is in another sentence
    ],
)
def test_confidence(text: str, confidence: float | None) -> None:
    assert parse_answer(text).confidence == (pytest.approx(confidence) if confidence is not None else None)


@pytest.mark.parametrize(
    ("text", "interpretation"),
    [
        (
            "**Classification:** Synthetic\n\n**Interpretation:**\n* Optic disc sharp.\n* No exudates.",
            "* Optic disc sharp.\n* No exudates.",
        ),
        ("Real or synthetic: Real\nConfidence: 85%\nInterpretation: Normal fundus.", "Normal fundus."),
        ("Real.\n\nThe fundus shows a healthy optic disc.", "The fundus shows a healthy optic disc."),
        ("Synthetic (AI-generated). The ribs merge unnaturally.", "The ribs merge unnaturally."),
        ("Real - normal PA chest radiograph.", "normal PA chest radiograph."),
        (
            "1. Synthetic\n2. Chest X-ray, PA view, no consolidation.",
            "2. Chest X-ray, PA view, no consolidation.",
        ),
        ("This appears to be a real chest X-ray. The lungs are clear.", "The lungs are clear."),
        (
            "The lungs are clear and the heart is normal in size.\n\n**Verdict:** Real\n**Confidence:** 80%",
            "The lungs are clear and the heart is normal in size.",
        ),
        (
            "## Findings\nMild cardiomegaly.\n\n## Verdict\nSynthetic",
            "Mild cardiomegaly.",
        ),
        (
            '{"label": "synthetic", "confidence": 0.8, "interpretation": "Fundus image with',
            "Fundus image with",
        ),
        (  # Gemini: the Interpretation section, not the Reasoning one; nested bullets stay inside it
            "**Real or Synthetic:** Synthetic\n\n**Reasoning:**\n* Ribs too symmetric.\n\n**Interpretation:**\n"
            "* **Modality:** Chest X-ray\n* **Findings:** Clear lungs.\n\n**Confidence:** 75%",
            "* **Modality:** Chest X-ray\n* **Findings:** Clear lungs.",
        ),
        (  # GPT-4o markdown: list markers are kept
            "### Verdict\nThis image appears to be **synthetic**.\n\n### Interpretation\n- Modality: fundus\n"
            "- Macula: normal",
            "- Modality: fundus\n- Macula: normal",
        ),
        ("Real.", None),
        ("I'm sorry, but I can't help with that.", None),
        (
            '{"label": "real"}\nThe image shows a normal chest radiograph with clear costophrenic angles.',
            "The image shows a normal chest radiograph with clear costophrenic angles.",
        ),
        ('Here is my answer: {"label": "real", "confidence": 0.7} Hope this helps.', None),
        (
            "The optic disc and macula are normal. No haemorrhages.",
            "The optic disc and macula are normal. No haemorrhages.",
        ),
    ],
)
def test_interpretation(text: str, interpretation: str | None) -> None:
    assert parse_answer(text).interpretation == interpretation


def test_json_interpretation_is_exactly_the_field() -> None:
    field = '  Colour fundus photograph.\nOptic disc: sharp margin; "cup" 0.3.\n  Macula: drusen.  '
    text = (
        "```json\n"
        + json.dumps({"label": "synthetic", "confidence": 0.85, "interpretation": field})
        + "\n```"
    )
    answer = parse_answer(text + "\nLet me know if you need more detail.")
    assert (answer.label, answer.confidence, answer.interpretation, answer.rule) == (
        "synthetic",
        0.85,
        field,
        "json",
    )


def test_spans_survive_characters_whose_lowercase_is_longer() -> None:
    # "\u0130".lower() is two characters; the interpretation must still be cut at the right place.
    text = "Synthetic. \u0130mage of a fundus; \u0130STANBUL camera."
    answer = parse_answer(text)
    assert answer == ParsedAnswer(
        "synthetic", None, "\u0130mage of a fundus; \u0130STANBUL camera.", "opening", (0, 10)
    )
    assert text[slice(*answer.span)] == "Synthetic."


def test_json_interpretation_falls_back_to_description() -> None:
    answer = parse_answer('{"verdict": "real", "description": "PA chest film.", "reasoning": "grain"}')
    assert (answer.label, answer.confidence, answer.interpretation) == ("real", None, "PA chest film.")


GEMINI_1KB = (
    "**Classification:** Synthetic\n\n**Interpretation:**\n"
    + "* The fundus shows a well-defined optic disc and a normal macula without exudates.\n" * 11
    + "It is difficult to be certain, but the vessel pattern suggests it was generated by a GAN."
)
GPT_1KB = (
    "I'm not able to determine with certainty whether an image is real or synthetic. However, based on the "
    "visual characteristics, this appears to be a genuine retinal fundus photograph. "
    + "The optic disc is well defined, with a cup-to-disc ratio of about 0.3, and the retinal vessels branch "
    "naturally without abrupt terminations. " * 6
)[:1024]


@pytest.mark.parametrize(("text", "label"), [(GEMINI_1KB, "synthetic"), (GPT_1KB, "real")])
def test_parse_is_fast_on_a_1kb_answer(text: str, label: str) -> None:
    assert 900 <= len(text) <= 1200 and parse_answer(text).label == label
    runs = timeit.repeat(lambda: parse_answer(text), number=100, repeat=5, timer=time.process_time)
    assert min(runs) / 100 < 1e-3  # generous bound (measured 20-80 us) so a loaded CI machine does not flake


def test_run_on_answer_takes_linear_time() -> None:
    # Open models sometimes repeat a phrase until the token limit; every look-around is bounded.
    text = "The image is real and " * 2000
    started = time.process_time()
    assert parse_answer(text).label == "real"
    assert time.process_time() - started < 1.0  # quadratic look-arounds took about 3 s here


# Shapes seen in real answers that version 1 misread (issue 8; paraphrased, the verbatim ones are in the corpus).
REAL_WORLD_SHAPES = [
    ("The image appears to be authentic rather than AI-generated.", "real"),
    ("Based on these observations, the image is likely AI-generated.", "synthetic"),
    ("The photograph is highly likely to be an authentic photograph.", "real"),
    ("No signs of deepfake manipulation or AI generation were found.", "real"),
    (
        "There are no obvious signs of digital editing that would typically indicate manipulation or AI generation.",
        "real",
    ),  # fmt: skip
    ("This is a fake image. The folds of the fabric are inconsistent with real materials.", "synthetic"),
    ("The image is pristine.", "real"),
    ("Honestly? This is AI.", "synthetic"),
    ("It looks like a genuine capture from a fundus camera.", "real"),
    ("Is the image AI-generated? -> Likely no", "real"),
    ("Is the image AI-generated?\n\nAnswer: Yes. The vessels end abruptly.", "synthetic"),
    ("**Assessment: Likely Real (with some AI-generated concerns)**\n\nConfidence: Medium", "real"),
    ("**Final Score: 2/10 — Certainly Real**\n\n**Confidence: High**", "real"),
    (
        "(0 = certainly real, 10 = certainly fake)\n\nThe image is more likely to be AI-generated.",
        "synthetic",
    ),
    ("I would rate the likelihood of the media being AI-generated as low.", "real"),
    ("I rate the image a 3 out of 10 on the likelihood scale of being AI-generated or manipulated.", "real"),
    ("The lack of digital artifacts supports the conclusion that this image is likely real.", "real"),
    (
        "The lighting appears consistent with artificial street lighting, and the image is likely real.",
        "real",
    ),
    ("It is consistent with real explosions; however, the smoke suggests it is AI-generated.", "synthetic"),
    ("<think>The textures look off, maybe fake.</think> <answer> real </answer>", "real"),
    ("It dates back to at least 2016, so definitely not AI.", "real"),
    (
        "I'm unable to view or analyze images directly. Unusual textures might indicate manipulation.",
        "refused",
    ),
    ("Without definitive evidence of manipulation, it is hard to say whether it is real.", "uncertain"),
]


@pytest.mark.parametrize(("text", "label"), REAL_WORLD_SHAPES)
def test_real_world_shapes(text: str, label: str) -> None:
    assert parse_answer(text).label == label


@pytest.mark.parametrize(
    ("text", "label", "rule", "words", "needs_review"),
    [
        ('{"label": "synthetic", "confidence": 0.8}', "synthetic", "json", '{"label": "synthetic", "confidence": 0.8}', False),
        ("Intro line.\n**Verdict:** Real\nThe disc is sharp.", "real", "labelled_line", "**Verdict:** Real", False),
        ("## Verdict\n\nSynthetic\n\n## Findings\nDrusen.", "synthetic", "labelled_line", "## Verdict\n\nSynthetic", False),
        ("  Not real. The ribs merge.", "synthetic", "opening", "Not real.", False),
        ("The optic disc is sharp. Overall, this appears to be a real fundus photograph.", "real", "prose",
         "Overall, this appears to be a real fundus photograph.", False),
        ("I'm sorry, but I can't assist with analyzing medical images.", "refused", "prose",
         "I'm sorry, but I can't assist with analyzing medical images.", False),
        ("It is impossible to tell whether this X-ray is real.", "uncertain", "prose",
         "It is impossible to tell whether this X-ray is real.", False),
        ("It is real. It is fake.", "unparseable", "prose", "It is real. It is fake.", True),  # a conflict: look
        ("The optic disc and macula are normal.", "unparseable", "none", None, True),  # no verdict: look
    ],
)  # fmt: skip
def test_provenance(text: str, label: str, rule: str, words: str | None, needs_review: bool) -> None:
    answer = parse_answer(text)
    assert (answer.label, answer.rule, answer.needs_review) == (label, rule, needs_review)
    assert (text[slice(*answer.span)] if answer.span else None) == words


def test_provenance_of_refusals_and_empty_answers() -> None:
    assert parse_answer("", "stop", "I can't help with that.") == ParsedAnswer(
        "refused", None, None, "refusal"
    )
    assert parse_answer(None, "SAFETY").rule == "refusal"
    assert parse_answer("The image shows a", "SAFETY").rule == "refusal"  # cut by a filter, no verdict
    assert parse_answer("  \n", "stop") == ParsedAnswer("unparseable", None, None, "empty", None, False)


def test_parser_version_names_this_reading() -> None:
    from cache.parse import PARSER_VERSION, RULES

    assert PARSER_VERSION == "2"
    assert RULES == ("refusal", "empty", "json", "labelled_line", "opening", "prose", "none")
