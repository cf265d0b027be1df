"""What a conv layer has learned: `filters` (gradient ascent per filter), `activations` (the layer's
outputs for one image) and `dream` (deep dream from an image)."""
from __future__ import annotations

from typing import Annotated, Any, Optional

import numpy as np
import typer

from onnxplain.engine.errors import BadInputError

from .loading import ModelOptions, check_model_path, model_options, open_model
from .options import JsonOpt, LayerOpt, ModelArg, OutOpt, QuietOpt, SeedOpt, parse_index_list
from .output import command_output, default_out, safe_name, write_figure_result

InputArg = Annotated[str, typer.Argument(
    help="One image: a PNG/JPG, a .npy, or a dataset row DATA:ROW such as train.csv:5.", show_default=False)]
StepsOpt = Annotated[Optional[int], typer.Option("--steps", min=1, help="Gradient-ascent steps.", show_default=False)]


def register(app: typer.Typer) -> None:
    app.command("filters")(filters_command)
    app.command("activations")(activations_command)
    app.command("dream")(dream_command)


def _one_image(item: str) -> tuple[str, np.ndarray]:
    from onnxplain.engine.data import parse_inputs

    pairs = parse_inputs([item])
    if len(pairs) != 1:
        raise BadInputError(f"{item} holds {len(pairs)} images; give one (e.g. DATA:ROW such as train.csv:5)")
    return pairs[0]


def _display(model: Any, image: np.ndarray) -> np.ndarray:
    """An image as the model sees it, (H, W, C) in [0, 1]."""
    return model.spec.to_display(model.spec.to_model_input([image]))[0]


@model_options
def filters_command(
    model: ModelArg,
    layer: LayerOpt = None,
    filters: Annotated[Optional[str], typer.Option(
        "--filters", help="Which filters: 0-15 or 0,3,7 (default: the first ones of the layer).",
        show_default=False)] = None,
    from_image: Annotated[Optional[str], typer.Option(
        "--from-image", help="Start the ascent from this image instead of noise.", show_default=False)] = None,
    steps: StepsOpt = None,
    lr: Annotated[Optional[float], typer.Option("--lr", min=0.0, help="Gradient-ascent step size.",
                                                show_default=False)] = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts: ModelOptions,
) -> None:
    """Filter visualisation: images that maximise each filter's mean activation, by gradient ascent."""
    check_model_path(model)
    chosen = parse_index_list(filters, "filters")
    from onnxplain.engine.features import visualize_filters
    from onnxplain.engine.render import render_filters

    start = _one_image(from_image)[1] if from_image else None
    params = {k: v for k, v in {"steps": steps, "lr": lr}.items() if v is not None}
    with command_output(json_mode=json_out, quiet=quiet) as run:
        m = open_model(model, model_opts, run.progress)
        run.progress("gradient ascent on the filters", None)
        vis = visualize_filters(m, layer, chosen, seed=seed, from_image=start, **params)
        mean_start, mean_final = float(np.mean(vis.start_activation)), float(np.mean(vis.final_activation))
        write_figure_result(
            run, out or default_out(model, "filters"), safe_name(str(vis.layer)),
            render=lambda path: render_filters(vis, path), array=vis.images,
            doc={"command": "filters", "model": str(model), "layer": str(vis.layer), "filters": list(vis.filters),
                 "start_activation": vis.start_activation, "final_activation": vis.final_activation,
                 "seconds": vis.seconds, "seed": seed, "params": params, "from_image": from_image},
            summary=f"{len(vis.filters)} filters of {vis.layer} in {vis.seconds:.1f} s; mean activation "
                    f"{mean_start:.3g} -> {mean_final:.3g}",
        )


@model_options
def activations_command(
    model: ModelArg,
    input: InputArg,
    layer: LayerOpt = None,
    out: OutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts: ModelOptions,
) -> None:
    """The outputs (activation maps) of a conv layer for one image."""
    check_model_path(model)
    name, image = _one_image(input)
    from onnxplain.engine.features import activation_maps
    from onnxplain.engine.render import render_activations

    with command_output(json_mode=json_out, quiet=quiet) as run:
        m = open_model(model, model_opts, run.progress)
        acts = activation_maps(m, image, layer)
        maps = np.asarray(acts.maps)
        write_figure_result(
            run, out or default_out(model, "activations"), f"{safe_name(str(acts.layer))}_{safe_name(name)}",
            render=lambda path: render_activations(acts, path), array=maps,
            doc={"command": "activations", "model": str(model), "input": name, "layer": str(acts.layer),
                 "channels": int(maps.shape[0]), "map_shape": list(maps.shape[1:]),
                 "max_per_channel": maps.reshape(len(maps), -1).max(axis=1)},
            summary=f"{maps.shape[0]} activation maps of {acts.layer} ({maps.shape[1]}x{maps.shape[2]}) for {name}",
        )


@model_options
def dream_command(
    model: ModelArg,
    input: InputArg,
    layer: LayerOpt = None,
    steps: StepsOpt = None,
    octaves: Annotated[Optional[int], typer.Option("--octaves", min=1, help="Scales to dream at.",
                                                   show_default=False)] = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts: ModelOptions,
) -> None:
    """Deep dream: ascend a layer's activation starting from an image."""
    check_model_path(model)
    name, image = _one_image(input)
    from onnxplain.engine.features import deep_dream
    from onnxplain.engine.render import render_dream

    params = {k: v for k, v in {"steps": steps, "octaves": octaves}.items() if v is not None}
    with command_output(json_mode=json_out, quiet=quiet) as run:
        m = open_model(model, model_opts, run.progress)
        run.progress("deep dream", None)
        dream = deep_dream(m, image, layer, seed=seed, **params)
        write_figure_result(
            run, out or default_out(model, "dream"), f"{safe_name(str(dream.layer))}_{safe_name(name)}",
            render=lambda path: render_dream(dream, path, original=_display(m, image)), array=dream.image,
            doc={"command": "dream", "model": str(model), "input": name, "layer": str(dream.layer),
                 "start_objective": dream.start_objective, "final_objective": dream.final_objective,
                 "seconds": dream.seconds, "seed": seed, "params": params},
            summary=f"deep dream on {dream.layer}: objective {dream.start_objective:.3g} -> "
                    f"{dream.final_objective:.3g} in {dream.seconds:.1f} s",
        )
