"""``train_toy`` end to end at one step a stage: the stage chain, the fresh aux head, the weight mean, resuming."""
from __future__ import annotations

import json
from dataclasses import fields

import pytest
import torch
from safetensors.torch import load_file

from ov2_ros.train.toy import ToyRecipe, stage_weights, train_toy


def test_the_toy_recipe_chains_its_stages_and_starts_o_from_the_mean_of_k_and_n(tmp_path):
    run = {"a", "k", "n", "o"}
    steps = {f.name: int(f.name[len("steps_"):] in run) for f in fields(ToyRecipe) if f.name.startswith("steps_")}
    scenes = {f.name: 1 for f in fields(ToyRecipe) if f.name.startswith("scenes_")}
    recipe = ToyRecipe(batch_size=2, **steps, **scenes)
    assert recipe.last_stage() == "o"
    summaries = train_toy(tmp_path, recipe, progress=False)
    assert sorted(summaries) == sorted(run)
    assert summaries["o"]["config"]["lr"] == recipe.lr_o
    assert tuple(summaries["n"]["config"]["move_tasks"]) == ("ground",)
    k = load_file(str(tmp_path / "stage_k" / "model" / "model.safetensors"))
    n = load_file(str(tmp_path / "stage_n" / "model" / "model.safetensors"))
    start = stage_weights(tmp_path, "n", "o", recipe)
    name = "model.language_model.layers.0.mlp.up_proj.weight"
    assert not torch.allclose(k[name], n[name])
    assert torch.allclose(start[name], 0.5 * (k[name] + n[name]), atol=1e-6)
    assert torch.equal(stage_weights(tmp_path, "k", "n", recipe)[name], k[name])      # no mean elsewhere

    before = (tmp_path / "stage_o" / "model" / "model.safetensors").stat().st_mtime_ns
    again = train_toy(tmp_path, recipe, progress=False)                                # finished: nothing retrained
    assert (tmp_path / "stage_o" / "model" / "model.safetensors").stat().st_mtime_ns == before
    assert again["o"]["final_loss"] == summaries["o"]["final_loss"]
    assert sorted(json.loads((tmp_path / "recipe.json").read_text())["stages"]) == sorted(run)


def test_resuming_from_a_published_toy_trains_only_the_later_stages(tmp_path):
    from ov2_ros.train.errors import TrainDataError
    from ov2_ros.train.toy import publish

    def recipe_of(run):
        steps = {f.name: int(f.name[len("steps_"):] in run) for f in fields(ToyRecipe) if f.name.startswith("steps_")}
        return ToyRecipe(batch_size=2, **steps, **{f.name: 1 for f in fields(ToyRecipe) if f.name.startswith("scenes_")})

    first = recipe_of({"a"})
    train_toy(tmp_path / "first", first, progress=False)
    published = publish(tmp_path / "first", tmp_path / "published", first)
    weights = load_file(str(published / "model.safetensors"))

    later = recipe_of({"a", "v", "x"})
    summaries = train_toy(tmp_path / "later", later, progress=False, resume_from=published)
    assert sorted(summaries) == ["a", "v", "x"]
    assert summaries["a"] == json.loads((published / "recipe.json").read_text())["stages"]["a"]
    assert not (tmp_path / "later" / "stage_a").exists()                  # taken from the published model
    assert summaries["v"]["config"]["vmove_weight"] == later.vmove_weight and summaries["v"]["config"]["aux_warmup"]
    assert summaries["x"]["config"]["lr"] == later.lr_x
    v = load_file(str(tmp_path / "later" / "stage_v" / "model" / "model.safetensors"))
    name = "model.language_model.layers.0.mlp.up_proj.weight"
    assert torch.allclose(v[name], weights[name], atol=0.05)             # one step away from the published weights
    again = publish(tmp_path / "later", published, later)
    assert (again / "loss_stage_a.png").is_file() and (again / "loss_stage_x.png").is_file()

    with pytest.raises(TrainDataError, match="aux head"):   # b would need stage a's head
        train_toy(tmp_path / "bad", recipe_of({"a", "b"}), progress=False, resume_from=published)
