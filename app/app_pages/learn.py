"""Learn: a guided tour (attack → neurons → defence on a ready example) and the methods with their papers.

The tour always uses the same ready example, whatever the sidebar says: the embedded digits-cnn,
the start-up sample digit (``analysis.DEFAULT_SAMPLE_ID``) and the start-up attack
(``analysis.default_choice()``), the example ``bench/choose_example.py`` picks because it shows
both halves of NIP's observation furthest beyond its matched control (noise of the same size).
Every number and every direction in its text is computed live
by the library (through the cached analysis), never written in by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from app import actions, components, state
from app import runs as analysis
from neuronviz import figures
from neuronviz.core.models import PixelModel
from neuronviz.data.images import Sample
from neuronviz.figures import attack as attack_figures
from neuronviz.figures import captions
from neuronviz.figures import neurons as neuron_figures
from neuronviz.methods.attacks import AttackInfo, get_attack
from neuronviz.methods.defences import get_defence
from neuronviz.methods.influence import DEFAULT_GROUP_FRACTION, SIGN_CONVENTION
from neuronviz.workflows import evidence as evidence_lib

TOUR_MODEL = state.DEFAULT_MODEL
TOUR_SAMPLE = analysis.DEFAULT_SAMPLE_ID  # the start-up example (bench/choose_example.py)
GO_TO_ATTACK = "learn.go_to_attack"  # session_state: the tour's button asked for the Attack page

# The sidebar's widget keys that the tour's button sets (app/actions.py writes them).
MODEL_SOURCE_KEY = actions.MODEL_SOURCE_KEY
MODEL_NAME_KEY = actions.MODEL_NAME_KEY
IMAGE_SOURCE_KEY = actions.IMAGE_SOURCE_KEY
SAMPLE_CLASS_KEY = actions.SAMPLE_CLASS_KEY
SAMPLE_EXAMPLE_KEY = actions.SAMPLE_EXAMPLE_KEY


def render() -> None:
    tour_tab, methods_tab = st.tabs(["Guided tour", "Methods and papers"])
    if st.session_state.pop(GO_TO_ATTACK, False):
        st.switch_page("app_pages/attack.py")
    with tour_tab:
        tour()
    with methods_tab:
        methods()


def _load_example(sample_id: str, true_class: int, example: int) -> None:
    """Button callback: put the tour's example into the sidebar (runs before the next run)."""
    actions.choose_sample(TOUR_MODEL, true_class, example)
    model = state.load_requested_model(state.ModelRequest(name=TOUR_MODEL))
    analysis.set_attack_choice(model, analysis.default_choice())  # the tour's attack, not the last one
    actions.reset_attack_widgets(analysis.default_choice())
    components.request_scroll_to_top()  # the Attack page opens at its top, not at the tour's scroll position
    st.session_state[GO_TO_ATTACK] = True


def _example() -> tuple[PixelModel, Sample, analysis.Analysis] | None:
    model = state.load_requested_model(state.ModelRequest(name=TOUR_MODEL))
    samples = [s for s in state.samples_for(model) if s.id == TOUR_SAMPLE]
    if not samples:
        return None
    sample = samples[0]
    image, _ = state.load_requested_image(state.ImageRequest.for_sample(sample), model)
    result = analysis.full_analysis(model, image, analysis.default_choice())
    return model, sample, result


def tour() -> None:
    """The five steps on the ready example (the session's front/tail size)."""
    front = components.group_fraction()  # the session's front/tail size (default DEFAULT_GROUP_FRACTION)
    found = analysis.attempt(_example)
    if found is None:
        st.info("The tour's example (the embedded digits-cnn and its sample digits) is not available here.")
        return
    model, sample, result = found
    if sample.true_class is None:  # the embedded digits all have their class; a model without one has no tour
        st.info("The tour's example digit has no known class here.")
        return
    st.markdown(
        f"A five-step story for a lesson or a first visit: **{TOUR_MODEL}**, a small network trained by "
        f"this project on handwritten digits, and one digit of its test set. Everything below is computed "
        f"live by neuronviz; the sidebar's own choice is not used here."
    )
    _step_model_reads(result, sample, model.class_names, sample.true_class)
    _step_attack(result, model.class_names, sample.true_class)
    _step_neurons(result, model, sample, front)
    _step_defences(result, model.class_names, sample.true_class)
    _step_try_it(model, sample, sample.true_class)


def _step_model_reads(result: analysis.Analysis, sample: Sample, names: Sequence[str], true_class: int) -> None:
    """Step 1: the clean digit and the model's answer."""
    clean = result.prediction("clean")
    st.subheader("1 · The model reads a digit", divider="gray")
    left, right = st.columns([2, 3], gap="large")
    with left:
        components.chart(
            components.figure(figures.image_figure, result.clean, title=sample.label, height=300),
            "tour-1-clean",
            key="learn.clean",
        )
    with right:
        components.chart(
            components.figure(
                figures.prediction_bars,
                result.probabilities("clean"),
                names,
                title="What the model says",
                true_class=true_class,
            ),
            "tour-1-prediction",
            key="learn.clean_bars",
        )
        st.markdown(
            f"The network outputs a probability for each of the ten digits. It says **{names[clean]}** with "
            f"{100 * float(result.probabilities('clean')[clean]):.1f}% confidence, and "
            + ("it is right." if clean == true_class else f"it is wrong: this is a {names[true_class]}.")
        )


def _step_attack(result: analysis.Analysis, names: Sequence[str], true_class: int) -> None:
    """Step 2: the perturbation, the attacked image and the model's new answer."""
    clean, adv = result.prediction("clean"), result.prediction("adversarial")
    st.subheader("2 · An attacker adds a tiny, deliberate change", divider="gray")
    left, middle, right = st.columns(3, gap="medium")
    with left:
        amplification = attack_figures.perturbation_amplification(result.perturbation)
        components.chart(
            components.figure(
                attack_figures.perturbation_figure,
                result.perturbation,
                title=f"The change (×{amplification:.3g})",
                height=300,
            ),
            "tour-2-perturbation",
            key="learn.perturbation",
        )
        st.caption(
            f"Vermillion = brighter, blue = darker, white = unchanged; colours amplified ×{amplification:.3g} so the "
            "largest change is visible."
        )
    with middle:
        components.chart(
            components.figure(figures.image_figure, result.adversarial, title="Attacked image", height=300),
            "tour-2-adversarial",
            key="learn.adv",
        )
    with right:
        components.chart(
            components.figure(
                figures.prediction_bars,
                result.probabilities("adversarial"),
                names,
                title="What the model says now",
                color_key="adversarial",
                true_class=true_class,
            ),
            "tour-2-prediction",
            key="learn.adv_bars",
        )
    if adv != clean:
        st.markdown(_attack_sentence(result, names, true_class))
    else:
        st.markdown(f"This time the attack did not change the prediction ({names[adv]}).")


def _attack_sentence(result: analysis.Analysis, names: Sequence[str], true_class: int) -> str:
    """What the attack did, in numbers computed by the analysis (the prediction changed)."""
    adv = result.prediction("adversarial")
    return (
        f"**{get_attack(result.choice.attack).label}** looked at the network's gradients {result.params['steps']} "
        f"times and moved each pixel by at most ε = {captions.eps_label(result.params['eps'])} of the brightness "
        f"range. To a person it is still a {names[true_class]}; the network now says **{names[adv]}** with "
        f"{100 * float(result.probabilities('adversarial')[adv]):.1f}% confidence."
    )


def _step_neurons(result: analysis.Analysis, model: PixelModel, sample: Sample, front: float) -> None:
    """Step 3: what the attack did to the front and tail neurons, beside its matched control."""
    names = model.class_names
    clean = result.prediction("clean")
    layer = result.default_layer
    before, after = result.influence["clean"][layer], result.influence["adversarial"][layer]
    evidence = evidence_lib.analysis_evidence(result, layer, front, front)
    shift = evidence.attack
    k, t = shift.groups_before.front_size, shift.groups_before.tail_size
    st.subheader(captions.tour_neurons_heading(evidence), divider="gray")
    st.markdown(
        f"Each channel of the last convolutional layer (`{layer}`, {before.neurons} channels) has an **influence** on "
        f"the answer \"{names[clean]}\": its activation times how much the score of {names[clean]} changes with it. "
        f"The **front** neurons (the top {front:.0%}: {k}) push hardest for {names[clean]}, the **tail** neurons "
        f"(the bottom {front:.0%}: {t}) least; {components.group_fraction_note()}. NIP's authors observed that "
        f"attacks suppress the front and enhance the tail. {SIGN_CONVENTION}"
    )
    left, right = st.columns([3, 2], gap="large")
    with left:
        components.chart(
            components.figure(
                neuron_figures.influence_scatter,
                before,
                after,
                shift,
                names[clean],
                after_label="attacked",
                height=460,
            ),
            "tour-3-scatter",
            key="learn.scatter",
        )
    with right:
        st.caption(captions.scatter_caption(shift, "attacked"))
        _control_explanation(result, evidence)
    components.chart(
        components.figure(
            neuron_figures.group_bars,
            before,
            after,
            shift.groups_before,
            names[clean],
            after_label="attacked",
            height=400,
        ),
        "tour-3-bars",
        key="learn.bars",
    )
    st.caption(captions.group_bars_caption(before, after, shift.groups_before, names[clean], "attacked"))
    st.markdown(captions.shift_sentence(shift))
    _why_this_example(result, model, sample, front, layer)


def _control_explanation(result: analysis.Analysis, evidence: evidence_lib.ShiftEvidence) -> None:
    """Why the matched control is there, and the attack's effect beside it."""
    control = result.control
    st.markdown(
        f"**Is that the attack, or would any change do it?** The neurons were picked for being extreme on the "
        f"clean image, so on any other image they tend to be less extreme. The dashboard therefore also adds "
        f"random noise of the same size ({control.description}) and counts again."
        if control is not None else ""
    )
    if control is not None:
        attack_label = get_attack(result.choice.attack).label
        st.markdown(captions.evidence_sentence(evidence, attack_label, control.label).replace(f" {SIGN_CONVENTION}", ""))


def _why_this_example(
    result: analysis.Analysis, model: PixelModel, sample: Sample, front: float, layer: str
) -> None:
    """The expander that says how the example was chosen, with its counts computed now."""
    with st.expander("Why this example?", icon=":material/help:"):
        story = components.story_counts(result, front)
        st.markdown(
            f"The dashboard starts on **{sample.label}** under **{result.choice.describe(model)}** because "
            f"`bench/choose_example.py` scanned every sample digit of {TOUR_MODEL} under PGD and FGSM (their "
            f"default parameters, front/tail {DEFAULT_GROUP_FRACTION:.0%} at `{layer}`) and picked, "
            f"{components.STORY_CRITERION}. Computed now for this example: {story['front_lost']} of "
            f"{story['front']} front neurons lost activation ({story['control_front_lost']} under the noise), "
            f"{story['tail_gained']} of {story['tail']} tail neurons gained activation ({story['control_tail_gained']} "
            f"under the noise), the attack {'fooled' if story['fooled'] else 'did not fool'} the model, the noise "
            f"{'changed' if story['control_fooled'] else 'did not change'} its answer, and NIP (guided) "
            f"{'restored' if story['restored'] else 'did not restore'} the clean prediction. A chosen example shows "
            "what the effect looks like, not how often it happens: the neurons of a whole data set "
            "(`neuronviz neurons`) measure that. `python bench/choose_example.py` prints the whole table."
        )


def _step_defences(result: analysis.Analysis, names: Sequence[str], true_class: int) -> None:
    """Step 4: NIP (guided) and PSSR side by side, each with the model's answer after it."""
    st.subheader("4 · Two ways back", divider="gray")
    columns = st.columns(2, gap="large")
    for column, name in zip(columns, ["nip-guided", "pssr"]):
        with column:
            _restoration_column(result, name, names, true_class)
    st.markdown(
        "**NIP** nudges the pixels so that the front neurons fire more and the tail neurons less — the attack's neuron "
        "shift run backwards. Here it is told which class to restore (the clean prediction), so it is a tool for "
        "analysis, not a deployable defence. **PSSR** cuts out the pixels the prediction is most sensitive to and "
        "lets a small network trained for this model paint them back. Both are reconstructions of their papers "
        "(see *Methods and papers*)."
    )


def _restoration_column(result: analysis.Analysis, name: str, names: Sequence[str], true_class: int) -> None:
    """One defence: its restored image, the model's answer and whether it is back to the clean one."""
    restoration = result.restorations[name]
    clean = result.prediction("clean")
    defense = get_defence(name)
    predicted = int(restoration.prediction[0])
    inner = st.columns([2, 3])
    with inner[0]:
        components.chart(
            components.figure(figures.image_figure, restoration.restored, title=defense.short, height=260),
            f"tour-4-{name}",
            key=f"learn.{name}",
        )
    with inner[1]:
        components.chart(
            components.figure(
                figures.prediction_bars,
                restoration.probs[0],
                names,
                title="After the defence",
                color_key="restored",
                true_class=true_class,
            ),
            f"tour-4-{name}-prediction",
            key=f"learn.{name}_bars",
        )
    verdict = "back to" if predicted == clean else "not back to"
    st.markdown(f"**{defense.label}** — the model says **{names[predicted]}**, {verdict} {names[clean]}.")
    if components.used_fallback(restoration):
        components.restoration_notes(restoration)


def _step_try_it(model: PixelModel, sample: Sample, true_class: int) -> None:
    """Step 5: the button that opens the example on the Attack page, and the pages to visit next."""
    st.subheader("5 · Try it yourself", divider="gray")
    samples = [s for s in state.samples_for(model) if s.true_class == true_class]
    example = next(i for i, s in enumerate(samples) if s.id == sample.id)
    st.button(
        "Open this example on the Attack page",
        icon=":material/play_arrow:",
        on_click=_load_example,
        args=(sample.id, true_class, example),
        key="learn.load_example",
    )
    st.markdown(
        "Then change the attack or its strength in the sidebar (press *Run attack*), pick another digit, or upload "
        "your own model. Pages to visit next:"
    )
    links = st.columns(3)
    links[0].page_link("app_pages/neurons.py", label="Neurons: every layer", icon=":material/hub:")
    links[1].page_link("app_pages/defences.py", label="Defences: NIP and PSSR in detail", icon=":material/shield:")
    links[2].page_link("app_pages/filters.py", label="First-layer filters", icon=":material/grid_view:")


# -- methods --------------------------------------------------------------------------------------

METHODS = [
    (
        "Neuron influence and NIP (neuron-level inverse perturbation)",
        "Chen, Jin, Zheng, Chen, Liu — *NIP: Neuron-level Inverse Perturbation Against Adversarial Attacks*, "
        "[arXiv:2112.13060](https://arxiv.org/abs/2112.13060) (v3: IEEE TDSC, 2024).",
        r"I_j(x) = a_j(x)\cdot\frac{\partial z_c(x)}{\partial a_j(x)},\qquad "
        r"L(x)=\sum_{j\in\mathrm{front}}a_j(x)-\sum_{j\in\mathrm{tail}}a_j(x),\qquad "
        r"x \leftarrow \mathrm{clip}\Big(x + s\,\tfrac{\nabla_x L}{\sqrt{\mathrm{mean}(\nabla_x L^2)}+10^{-5}}\Big)",
        "Influence is activation × gradient of the benign class's logit (certain, from the authors' code); neurons are "
        "ranked into front (most influence), middle and tail (least). The defence ascends L. Per channel (spatial sum) "
        "by default; one forward and one backward pass give every layer at once.",
        ["nip-oracle", "nip-guided", "nip-reactive"],
        "Neurons, Defences, Attack (ε sweep)",
    ),
    (
        "Neuron sensitivity and SNS training",
        "Zhang, Liu, Liu et al. — *Interpreting and Improving Adversarial Robustness of Deep Neural Networks with Neuron "
        "Sensitivity*, IEEE TIP 30:1291–1304 (2021), [arXiv:1909.06978](https://arxiv.org/abs/1909.06978).",
        r"\sigma_{l,m}=\frac{1}{N}\sum_{i=1}^{N}\frac{\lVert F_{l,m}(x_i)-F_{l,m}(x'_i)\rVert_1}{\dim F_{l,m}}",
        "How much channel m of layer l moves between a clean image and its attacked version. The SNS-trained model "
        "(digits-cnn-sns) is a **reconstruction**: the paper's loss is not published in what could be read; ours "
        "adds the mean sensitivity of the top 10% channels per layer (λ = 1) to a half-clean, half-adversarial "
        "cross-entropy.",
        [],
        "Sensitivity",
    ),
    (
        "Fragile and robust first-layer filters (nodal dropout)",
        "Pravin, Martino, Nicosia, Ojha — *Adversarial Robustness in Deep Learning: Attacks on Fragile Neurons*, "
        "ICANN 2021, [arXiv:2201.12347](https://arxiv.org/abs/2201.12347).",
        r"T(i)=\frac{\operatorname{mean}\lvert a_i(x')-a_i(x)\rvert}{\operatorname{mean}\lvert a_i(x)\rvert},\qquad "
        r"a_i \leftarrow a_i\,(1\pm\beta r_i)",
        "Each first-layer filter is dropped in turn (its output channel zeroed) and clean and FGSM accuracy are "
        "measured; the attack's targeting T ranks the filters it hits. Filters whose removal changes adversarial "
        "accuracy most and that are targeted most are fragile. No code is public: the scoring and the "
        "compress/amplify rule (fragile × (1 + β·r), robust × (1 − β·r), β = 0.2) are a **reconstruction**.",
        [],
        "First-layer filters",
    ),
    (
        "PSSR: pixel surgery and semantic regeneration",
        "Fu, Zhou, Ma, Zhang — *Adversarial Purification via Pixel Surgery and Semantic Regeneration*, "
        "[arXiv:2402.00304](https://arxiv.org/abs/2402.00304) (2024).",
        r"S=\sum_{\text{channels}}\Big\lvert\frac{\partial p_c(x')}{\partial x'}\Big\rvert,\qquad "
        r"M_s=[S\ge\alpha\,\overline{S}],\qquad x_s=(1-M_s)\odot x',\qquad \hat x=G(x_s,M_s)",
        "Remove the salient pixels, keep the rest, regenerate with a small conditional U-Net trained per embedded "
        "model. No code is public: score, mask, regenerator and losses are this project's **reconstruction** of the "
        "abstract; a model without a trained regenerator gets a non-learned inpainting, and the page says so.",
        ["pssr"],
        "Defences, Attack",
    ),
]

def norm_text(info: AttackInfo) -> str:
    """The norm column of the attacks table: the budget's norm, or the norm a minimising attack
    keeps small (its entry's ``minimised_norm``)."""
    if info.norm:
        return {"Linf": "L∞ (budget ε)", "L2": "L2 (budget ε)", "L0": "L0 (budget)"}.get(info.norm, info.norm)
    if info.minimised_norm:
        return f"{info.minimised_norm} (minimised, no fixed budget)"
    return "none"


def methods() -> None:
    """The papers, their formulas, what is reconstructed, and the attacks table."""
    st.markdown(
        "neuronviz reproduces four papers. Where a paper's text could not be checked, the dashboard implements the "
        "best-supported reading and says **reconstruction**, with its defaults as parameters you can change."
    )
    for title, paper, formula, text, defence_names, where in METHODS:
        st.subheader(title, divider="gray")
        st.markdown(paper)
        st.latex(formula)
        st.markdown(text)
        for name in defence_names:
            defense = get_defence(name)
            with st.expander(f"{defense.label}: defaults and what is reconstructed"):
                st.markdown(defense.description)
                st.markdown(f"**Reconstruction:** {defense.reconstruction or 'none'}")
                st.dataframe(
                    [{"parameter": p.name, "default": str(p.default), "meaning": p.help} for p in defense.params],
                    hide_index=True,
                )
        st.caption(f"Where in the dashboard: {where}.")
    st.subheader("Attacks and attributions", divider="gray")
    st.markdown(
        "Attacks come from [torchattacks](https://github.com/Harry24k/adversarial-attacks-pytorch) (Kim, 2020, "
        "arXiv:2010.01950) on pixel images in [0, 1] with the normalisation inside the model; each attack's own paper "
        "is named next to it in the sidebar. Input attributions (saliency, integrated gradients, Grad-CAM) and the "
        "alternative neuron-influence methods (conductance, internal influence) come from "
        "[Captum](https://captum.ai) (Kokhlikyan et al., 2020, arXiv:2009.07896)."
    )
    st.dataframe(
        [
            {"attack": a.label, "norm": norm_text(a), "paper": a.paper}
            for a in map(get_attack, ["fgsm", "pgd", "cw", "deepfool", "square"])
        ],
        hide_index=True,
    )


if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
