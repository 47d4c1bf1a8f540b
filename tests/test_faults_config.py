"""Bad configs at every key's edges: each refused in one line naming the key (exit 2) while the
config is loaded, before Ray starts and before anything is written.

The tables follow gymnasium's tests (see test_faults.py): (case, --set overrides on top of a tiny
run, exit status, the message's start). What only a TOML file can say (a 5,000-deep array, a
200,000-entry list) is in CONFIG_FILES. Space overrides that a parameter can take are applied:
the draws and the rendered categories are checked."""

from __future__ import annotations

import numpy as np
import pytest

from generator.base import render_dataset
from loop.config import ConfigError, load_config
from loop.memory import available_memory, check_images_fit

from smoke import SMOKE, one_line_exit, tiny

NUL = "\\u0000"
BIG = 10**12                          # images no machine holds at 32×32×3 bytes (3 TB)
HUGE_INT = "1" + "0" * 400            # an integer beyond any float
RAY = "expected 0 or a number in [0.0001, 10000] (Ray's resource granularity is 0.0001), got "
FITS = "expected images that fit in memory ("
SCALE_KEYS = "['bounds', 'family', 'learn', 'range', 'size']"
CLASSES = "['cube', 'sphere', 'cylinder', 'cone', 'torus']"
NUMBER_FAMILIES = "['int', 'loguniform', 'truncnormal', 'uniform']"

CASES = [
    # (case, --set overrides, exit status, the message after "dropt CMD: error: ")
    # --- the cases ---------------------------------------------------------------------
    ("space choices unknown class", ['space."object.class".choices=["torus", "pyramid"]'], 2,
     f"space.object.class.choices: expected choices among {CLASSES}, got 'pyramid'"),
    ("space scale family categorical", ['space."object.scale".family="categorical"'], 2,
     f"space.object.scale.family: expected one of {NUMBER_FAMILIES} (the generator reads a number here), "
     "got 'categorical'"),
    ("space range reversed", ['space."object.scale".range=[1.2, 0.8]'], 2,
     "space.object.scale.range: expected low <= high, got [1.2, 0.8]"),
    ("space bounds 1e300", ['space."object.scale".bounds=[0.3, 1e300]'], 2,
     "space.object.scale.bounds: expected numbers within [-1e+06, 1e+06], got [0.3, 1e+300]"),
    ("space bounds -1e300", ['space."camera.distance".bounds=[-1e300, 15.0]'], 2,
     "space.camera.distance.bounds: expected numbers within [-1e+06, 1e+06], got [-1e+300, 15]"),
    ("space bounds inf", ['space."object.scale".bounds=[0.3, inf]'], 2,
     "space.object.scale.bounds: expected a finite number, got inf"),
    ("space bounds nan", ['space."object.scale".bounds=[nan, 2.0]'], 2,
     "space.object.scale.bounds: expected a finite number, got nan"),
    ("space bounds an integer beyond floats", [f'space."object.scale".bounds=[0.3, {HUGE_INT}]'], 2,
     "space.object.scale.bounds: expected a finite number, got 100000000000000000...0000000000000000000"),
    ("--set value with a newline", ["loop.budget=3\nseed=5"], 2,
     "--set loop.budget: expected one TOML value on one line, got '3\\nseed=5'"),
    ("--set value with a carriage return", ["loop.budget=3\rseed=5"], 2,
     "--set loop.budget: expected one TOML value on one line, got '3\\rseed=5'"),
    ("evaluator.options.width duplicates evaluator.width", ["evaluator.options.width=8"], 2,
     "evaluator.options.width: expected evaluator.width (a key of [evaluator] itself), "
     "got evaluator.options.width = 8"),
    ("evaluator.options.device duplicates evaluator.device", ['evaluator.options.device="cpu"'], 2,
     "evaluator.options.device: expected evaluator.device (a key of [evaluator] itself), "
     "got evaluator.options.device = 'cpu'"),
    ("evaluator.options.threads", ["evaluator.options.threads=2"], 2,
     "evaluator.options.threads: expected evaluator.threads (a key of [evaluator] itself)"),
    ("evaluator.options.images", ["evaluator.options.images=8"], 2,
     "evaluator.options.images: expected evaluator.images (a key of [evaluator] itself)"),
    ("render.num_cpus 1e308", ["render.num_cpus=1e308"], 2, "render.num_cpus: " + RAY + "1e+308"),
    ("render.num_cpus 1e-300", ["render.num_cpus=1e-300"], 2, "render.num_cpus: " + RAY + "1e-300"),
    ("render.num_cpus 5e-5", ["render.num_cpus=5e-5"], 2, "render.num_cpus: " + RAY + "5e-05"),
    ("render.num_cpus 10001", ["render.num_cpus=10001"], 2, "render.num_cpus: " + RAY + "10001"),
    ("render.num_gpus 1e308", ["render.num_gpus=1e308"], 2, "render.num_gpus: " + RAY + "1e+308"),
    ("render.num_gpus 1e-300", ["render.num_gpus=1e-300"], 2, "render.num_gpus: " + RAY + "1e-300"),
    ("evaluator.num_cpus 1e308", ["evaluator.num_cpus=1e308"], 2, "evaluator.num_cpus: " + RAY + "1e+308"),
    ("evaluator.num_cpus 1e-300", ["evaluator.num_cpus=1e-300"], 2, "evaluator.num_cpus: " + RAY + "1e-300"),
    ("evaluator.num_gpus 1e308", ["evaluator.num_gpus=1e308"], 2, "evaluator.num_gpus: " + RAY + "1e+308"),
    ("evaluator.num_gpus 1e-300", ["evaluator.num_gpus=1e-300"], 2, "evaluator.num_gpus: " + RAY + "1e-300"),
    ("render.resources 1e300", ["render.resources={fast_disk=1e300}"], 2,
     "render.resources.fast_disk: " + RAY + "1e+300"),
    ("evaluator.resources 1e-300", ["evaluator.resources={fast_disk=1e-300}"], 2,
     "evaluator.resources.fast_disk: " + RAY + "1e-300"),
    ("evaluator.images 10^12", [f"evaluator.images={BIG}"], 2, f"evaluator.images: {FITS}"),
    ("evaluator.images 1e12 (a float)", ["evaluator.images=1e12"], 2,
     "evaluator.images: expected an integer >= 1, got 1000000000000.0"),
    ("evaluator.final_images 10^12", [f"evaluator.final_images={BIG}"], 2, f"evaluator.final_images: {FITS}"),
    ("target.val 10^12", [f"target.val={BIG}"], 2, f"target.val: {FITS}"),
    ("target.test 10^12", [f"target.test={BIG}"], 2, f"target.test: {FITS}"),
    ("target.train 10^12", [f"target.train={BIG}"], 2, f"target.train: {FITS}"),
    ("evaluator.real with NUL", [f'evaluator.real="a{NUL}b"'], 2,
     "evaluator.real: expected a string without NUL bytes, got 'a\\x00b'"),
    ("evaluator.target_config with NUL", [f'evaluator.target_config="t{NUL}.toml"'], 2,
     "evaluator.target_config: expected a string without NUL bytes, got 't\\x00.toml'"),
    ("ray.working_dir with NUL", [f'ray.working_dir="plugins{NUL}"'], 2,
     "ray.working_dir: expected a string without NUL bytes, got 'plugins\\x00'"),
    ("ray.py_modules with NUL", [f'ray.py_modules=["mod{NUL}"]'], 2,
     "ray.py_modules[0]: expected a string without NUL bytes, got 'mod\\x00'"),
    ("evaluator.task with NUL", [f'evaluator.task="pkg{NUL}:Cls"'], 2,
     "evaluator.task: expected a string without NUL bytes, got 'pkg\\x00:Cls'"),
    ("loop.optimizer with NUL", [f'loop.optimizer="re{NUL}inforce"'], 2,
     "loop.optimizer: expected a string without NUL bytes, got 're\\x00inforce'"),
    ("generator.name with NUL", [f'generator.name="shapes{NUL}"'], 2,
     "generator.name: expected a string without NUL bytes, got 'shapes\\x00'"),
    ("a range of 2,000 entries", ['space."object.scale".range=[' + ", ".join(["1.0"] * 2000) + "]"], 2,
     "space.object.scale.range: expected [low, high], got [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, ...]"),
    ("a string of 100,000 characters", ['evaluator.score="' + "x" * 100_000 + '"'], 2,
     "evaluator.score: expected one of ['ap50', 'map'], got '" + "x" * 27 + "..." + "x" * 28 + "'"),
    ("--set value nested 40 deep", ["evaluator.options.deep=" + "[" * 40 + "]" * 40], 2,
     "evaluator.options.deep: expected a value nested at most 32 deep, got deeper"),
    ("--set value nested 5,000 deep", ["evaluator.options.deep=" + "[" * 5000 + "]" * 5000], 2,
     "--set evaluator.options.deep: expected a value nested at most 32 deep, got '[[[[[[[[[["),

    # --- space: every override key at its edges --------------------------------------------------
    ("space not a table", ["space=3"], 2, "space: expected a table of parameters, got 3"),
    ("space parameter not a table", ['space."object.scale"=3'], 2, "space.object.scale: expected a table, got 3"),
    ("space unknown parameter", ["space.nonexistent.range=[0, 1]"], 2,
     "space.nonexistent: unknown parameter; expected one of ['object_count', "),
    ("space pattern matching nothing", ['space."nothing.*".learn=false'], 2,
     "space.nothing.*: unknown parameter; expected one of ['object_count', "),
    ("space unknown key", ['space."object.scale".stdev=1.0'], 2, "space.object.scale: unknown key(s) ['stdev']"),
    ("space mean on a loguniform", ['space."object.scale".mean=1.0'], 2,
     f"space.object.scale.mean: expected a key of a loguniform {SCALE_KEYS}, got 'mean'"),
    ("space choices on a uniform", ['space."object.x".choices=["a"]'], 2,
     "space.object.x.choices: expected a key of a uniform "),
    ("space range on an int", ['space."object_count".range=[0, 2]'], 2,
     "space.object_count.range: expected a key of a int "),
    ("space logit_bound on a uniform", ['space."object.x".logit_bound=3.0'], 2,
     "space.object.x.logit_bound: expected a key of a uniform "),
    ("space family unknown", ['space."object.scale".family="poisson"'], 2,
     f"space.object.scale.family: expected one of {NUMBER_FAMILIES} (the generator reads a number here), "
     "got 'poisson'"),
    ("space family a list", ['space."object.scale".family=["uniform"]'], 2,
     f"space.object.scale.family: expected one of {NUMBER_FAMILIES} (the generator reads a number here), "
     "got ['uniform']"),
    ("space count family uniform", ['space."object_count".family="uniform"'], 2,
     "space.object_count.family: expected one of ['int'] (the generator reads a whole count here), got 'uniform'"),
    ("space class family uniform", ['space."object.class".family="uniform"'], 2,
     "space.object.class.family: expected one of ['categorical'] (the generator reads an index into its "
     "choices here), got 'uniform'"),
    ("space size changed", ['space."object.x".size=3'], 2,
     "space.object.x.size: expected 2 (set by the generator), got 3"),
    ("space size 0", ['space."object.x".size=0'], 2, "space.object.x.size: expected 2 (set by the generator), got 0"),
    ("space size a string", ['space."object.x".size="2"'], 2,
     "space.object.x.size: expected 2 (set by the generator), got '2'"),
    ("space learn not a bool", ['space."object.x".learn=1'], 2, "space.object.x.learn: expected true or false, got 1"),
    ("space range one number", ['space."object.scale".range=[0.8]'], 2,
     "space.object.scale.range: expected [low, high], got [0.8]"),
    ("space range a string", ['space."object.scale".range="wide"'], 2,
     "space.object.scale.range: expected [low, high], got 'wide'"),
    ("space range a table", ['space."object.scale".range={low=0.5}'], 2,
     "space.object.scale.range: expected [low, high], got {'low': 0.5}"),
    ("space range nan", ['space."object.scale".range=[nan, 1.0]'], 2,
     "space.object.scale.range: expected a finite number, got nan"),
    ("space range of strings", ['space."object.scale".range=["a", "b"]'], 2,
     "space.object.scale.range: expected a number, got 'a'"),
    ("space range of booleans", ['space."object.scale".range=[true, false]'], 2,
     "space.object.scale.range: expected a number, got True"),
    ("space range outside bounds", ['space."object.scale".range=[0.1, 5.0]'], 2,
     "space.object.scale.range: expected a value within [0.3, 2.0], got 0.1"),
    ("space bounds reversed", ['space."light.intensity".bounds=[5.0, 1.0]'], 2,
     "space.light.intensity.bounds: expected low < high, got [5.0, 1.0]"),
    ("space bounds empty", ['space."light.intensity".bounds=[]'], 2,
     "space.light.intensity.bounds: expected [low, high], got []"),
    ("space loguniform bounds at 0", ['space."object.scale".bounds=[0.0, 2.0]'], 2,
     "space.object.scale.bounds: expected low > 0 for a log-uniform, got 0.0"),
    ("space int bounds not whole", ['space."object_count".bounds=[0, 2.5]'], 2,
     "space.object_count.bounds: expected integers, got [0.0, 2.5]"),
    ("space std negative", ['space."object_count".std=-1.0'], 2,
     "space.object_count.std: expected a positive standard deviation, got -1.0"),
    ("space std 0", ['space."object_count".std=0.0'], 2,
     "space.object_count.std: expected a positive standard deviation, got 0.0"),
    ("space std huge", ['space."object_count".std=1e300'], 2, "space.object_count.std: expected a value within "),
    ("space log_std nan", ['space."object_count".log_std=nan'], 2,
     "space.object_count.log_std: expected a finite number, got nan"),
    ("space std and log_std", ['space."object_count".log_std=0.0', 'space."object_count".std=1.0'], 2,
     "space.object_count: expected one of std or log_std, got both"),
    ("space mean outside bounds", ['space."object_count".mean=-5.0'], 2,
     "space.object_count.mean: expected a value within [0.0, 2.0], got -5.0"),
    ("space mean a string", ['space."object_count".mean="one"'], 2,
     "space.object_count.mean: expected a number, got 'one'"),
    ("space choices empty", ['space."object.class".choices=[]'], 2,
     "space.object.class.choices: expected a non-empty list, got []"),
    ("space choices a string", ['space."object.class".choices="torus"'], 2,
     "space.object.class.choices: expected a non-empty list, got 'torus'"),
    ("space choices repeated", ['space."object.class".choices=["torus", "torus"]'], 2,
     "space.object.class.choices: expected distinct choices, got ['torus', 'torus']"),
    ("space choices of another type", ['space."object.class".choices=[1, 2]'], 2,
     f"space.object.class.choices: expected choices among {CLASSES}, got 1"),
    ("space distractor shape unknown", ['space."distractor.shape".choices=["pyramid"]'], 2,
     "space.distractor.shape.choices: expected choices among ['capsule', 'slab'], got 'pyramid'"),
    ("space probs not summing to 1", ['space."object.class".probs=[0.5, 0.5, 0.5, 0.5, 0.5]'], 2,
     "space.object.class.probs: expected probabilities summing to 1, got sum 2.5"),
    ("space probs negative", ['space."object.class".probs=[-0.5, 0.5, 0.5, 0.25, 0.25]'], 2,
     "space.object.class.probs: expected non-negative probabilities, got [-0.5, 0.5, 0.5, 0.25, 0.25]"),
    ("space probs too few", ['space."object.class".probs=[0.5, 0.5]'], 2,
     "space.object.class.probs: expected 5 numbers, got [0.5, 0.5]"),
    ("space probs for narrowed choices, too many", ['space."object.class".choices=["torus", "cone"]',
                                                    'space."object.class".probs=[0.2, 0.2, 0.2, 0.2, 0.2]'], 2,
     "space.object.class.probs: expected 2 numbers, got [0.2, 0.2, 0.2, 0.2, 0.2]"),
    ("space logits outside the box", ['space."object.class".logits=[9.0, 0.0, 0.0, 0.0, 0.0]'], 2,
     "space.object.class.logits: expected a value within [-2.0, 2.0], got 9.0"),
    ("space probs and logits", ['space."object.class".logits=[0.0, 0.0, 0.0, 0.0, 0.0]',
                                'space."object.class".probs=[0.2, 0.2, 0.2, 0.2, 0.2]'], 2,
     "space.object.class: expected one of probs or logits, got both"),
    ("space logit_bound 0", ['space."object.class".logit_bound=0.0'], 2,
     "space.object.class.logit_bound: expected a number in (0, 20], got 0.0"),
    ("space logit_bound 100", ['space."object.class".logit_bound=100.0'], 2,
     "space.object.class.logit_bound: expected a number in (0, 20], got 100.0"),
    ("space logit_bound inf", ['space."object.class".logit_bound=inf'], 2,
     "space.object.class.logit_bound: expected a finite number, got inf"),

    # --- the top level and [generator] ------------------------------------------------------------
    ("seed negative", ["seed=-1"], 2, "seed: expected an integer >= 0, got -1"),
    ("seed a float", ["seed=1.5"], 2, "seed: expected an integer >= 0, got 1.5"),
    ("seed a boolean", ["seed=true"], 2, "seed: expected an integer >= 0, got True"),
    ("seed a list", ["seed=[1]"], 2, "seed: expected an integer >= 0, got [1]"),
    ("seed a table", ["seed={a=1}"], 2, "seed: expected an integer >= 0, got {'a': 1}"),
    ("seed nan", ["seed=nan"], 2, "seed: expected an integer >= 0, got nan"),
    ("unknown top-level key", ["bogus=1"], 2, "bogus: unknown key; expected one of ['evaluator', "),
    ("generator.name a number", ["generator.name=3"], 2, "generator.name: expected a string, got 3"),
    ("generator.name unknown", ['generator.name="nope"'], 2, "generator.name: expected "),
    ("generator.image_size 0", ["generator.image_size=0"], 2,
     "generator.image_size: expected an integer in [16, 1024], got 0"),
    ("generator.image_size huge", ["generator.image_size=100000"], 2,
     "generator.image_size: expected an integer in [16, 1024], got 100000"),
    ("generator.image_size a float", ["generator.image_size=32.0"], 2,
     "generator.image_size: expected an integer in [16, 1024], got 32.0"),
    ("generator.image_size a string", ['generator.image_size="32"'], 2,
     "generator.image_size: expected an integer in [16, 1024], got '32'"),
    ("generator.max_objects 0", ["generator.max_objects=0"], 2,
     "generator.max_objects: expected an integer in [1, 16], got 0"),
    ("generator.max_distractors -1", ["generator.max_distractors=-1"], 2,
     "generator.max_distractors: expected an integer in [0, 16], got -1"),
    ("generator.min_visible_pixels 0", ["generator.min_visible_pixels=0"], 2,
     "generator.min_visible_pixels: expected an integer in [1, 1024], got 0"),
    ("generator.depth a string", ['generator.depth="yes"'], 2, "generator.depth: expected true or false, got 'yes'"),
    ("generator.backend unknown", ['generator.backend="vulkan"'], 2,
     "generator.backend: expected one of ['gl', 'pyrender', 'pyrender-naive'], got 'vulkan'"),
    ("generator unknown option", ["generator.colour=1"], 2, "generator: expected options accepted by 'shapes', got "),

    # --- [render] ---------------------------------------------------------------------------------
    ("render.workers -1", ["render.workers=-1"], 2, "render.workers: expected an integer >= 0, got -1"),
    ("render.workers a string", ['render.workers="2"'], 2, "render.workers: expected an integer >= 0, got '2'"),
    ("render.workers a float", ["render.workers=1.5"], 2, "render.workers: expected an integer >= 0, got 1.5"),
    ("render.num_cpus -1", ["render.num_cpus=-1"], 2, "render.num_cpus: expected a finite number >= 0, got -1"),
    ("render.num_cpus inf", ["render.num_cpus=inf"], 2, "render.num_cpus: expected a finite number >= 0, got inf"),
    ("render.num_cpus a table", ["render.num_cpus={a=1}"], 2,
     "render.num_cpus: expected a finite number >= 0, got {'a': 1}"),
    ("render.num_gpus nan", ["render.num_gpus=nan"], 2, "render.num_gpus: expected a finite number >= 0, got nan"),
    ("render.chunk -1", ["render.chunk=-1"], 2, "render.chunk: expected an integer >= 0, got -1"),
    ("render.resources CPU", ["render.resources={CPU=1}"], 2,
     "render.resources: expected a table of custom resource names (not CPU or GPU) to amounts >= 0, got {'CPU': 1}"),
    ("render.resources negative", ["render.resources={fast_disk=-1}"], 2,
     "render.resources: expected a table of custom resource names (not CPU or GPU) to amounts >= 0, "
     "got {'fast_disk': -1}"),
    ("render.resources nan", ["render.resources={fast_disk=nan}"], 2, "render.resources: expected a table of "),
    ("render.resources a string amount", ['render.resources={fast_disk="1"}'], 2,
     "render.resources.fast_disk: expected a table of custom resource names (not CPU or GPU) to amounts >= 0, got '1'"),
    ("render.resources a list", ["render.resources=[1]"], 2, "render.resources: expected a table of custom "),
    ("render.label_selector a number value", ["render.label_selector={zone=1}"], 2,
     "render.label_selector.zone: expected a table of node label names to values, got 1"),
    ("render.strategy unknown", ['render.strategy="pack"'], 2,
     "render.strategy: expected one of ['default', 'spread'], got 'pack'"),
    ("render unknown key", ["render.speed=2"], 2, "render.speed: unknown key; expected one of ['chunk', "),

    # --- [target] (make-target) -------------------------------------------------------------------
    ("target.val 1", ["target.val=1"], 2, "target.val: expected an integer >= 2, got 1"),
    ("target.test -1", ["target.test=-1"], 2, "target.test: expected an integer >= 2, got -1"),
    ("target.train 0", ["target.train=0"], 2, "target.train: expected an integer >= 1, got 0"),
    ("target.val a string", ['target.val="6"'], 2, "target.val: expected an integer >= 2, got '6'"),
    ("target not a table", ["target=3"], 2, "target: expected a table, got 3"),
    ("target.camera.noise -1", ["target.camera.noise=-1.0"], 2,
     "target.camera.noise: expected a finite number >= 0, got -1.0"),
    ("target.camera.blur inf", ["target.camera.blur=inf"], 2,
     "target.camera.blur: expected a finite number >= 0, got inf"),
    ("target.camera.gamma 0", ["target.camera.gamma=0.0"], 2,
     "target.camera.gamma: expected a finite number >= 0.05, got 0.0"),
    ("target.camera.color_gain two numbers", ["target.camera.color_gain=[1.0, 1.0]"], 2,
     "target.camera.color_gain: expected three finite numbers >= 0 (R, G, B), got [1.0, 1.0]"),
    ("target.camera.color_gain negative", ["target.camera.color_gain=[1.0, 1.0, -1.0]"], 2,
     "target.camera.color_gain: expected three finite numbers >= 0 (R, G, B), got [1.0, 1.0, -1.0]"),
    ("target.camera.jpeg_quality 0", ["target.camera.jpeg_quality=0"], 2,
     "target.camera.jpeg_quality: expected an integer in [1, 95], got 0"),
    ("target.camera unknown key", ["target.camera.vignette=0.5"], 2, "target.camera.vignette: unknown key; "),

    # --- [evaluator] ------------------------------------------------------------------------------
    ("evaluator.task a number", ["evaluator.task=3"], 2, "evaluator.task: expected a string, got 3"),
    ("evaluator.real a list", ['evaluator.real=["a"]'], 2, "evaluator.real: expected a string, got ['a']"),
    ("evaluator.target_config a table", ["evaluator.target_config={a=1}"], 2,
     "evaluator.target_config: expected a string, got {'a': 1}"),
    ("evaluator.score f1", ['evaluator.score="f1"'], 2, "evaluator.score: expected one of ['ap50', 'map'], got 'f1'"),
    ("evaluator.images 0", ["evaluator.images=0"], 2, "evaluator.images: expected an integer >= 1, got 0"),
    ("evaluator.images -1", ["evaluator.images=-1"], 2, "evaluator.images: expected an integer >= 1, got -1"),
    ("evaluator.images nan", ["evaluator.images=nan"], 2, "evaluator.images: expected an integer >= 1, got nan"),
    ("evaluator.images a string", ['evaluator.images="8"'], 2, "evaluator.images: expected an integer >= 1, got '8'"),
    ("evaluator.steps 0", ["evaluator.steps=0"], 2, "evaluator.steps: expected an integer >= 1, got 0"),
    ("evaluator.batch_size 0", ["evaluator.batch_size=0"], 2, "evaluator.batch_size: expected an integer >= 1, got 0"),
    ("evaluator.warm_steps -1", ["evaluator.warm_steps=-1"], 2,
     "evaluator.warm_steps: expected an integer >= 0, got -1"),
    ("evaluator.warm_anchor unknown", ['evaluator.warm_anchor="best"'], 2,
     "evaluator.warm_anchor: expected one of ['config', 'round'], got 'best'"),
    ("evaluator.threads 0", ["evaluator.threads=0"], 2, "evaluator.threads: expected an integer >= 1, got 0"),
    ("evaluator.num_cpus -0.5", ["evaluator.num_cpus=-0.5"], 2,
     "evaluator.num_cpus: expected a finite number >= 0, got -0.5"),
    ("evaluator.num_gpus a string", ['evaluator.num_gpus="1"'], 2,
     "evaluator.num_gpus: expected a finite number >= 0, got '1'"),
    ("evaluator.device a number", ["evaluator.device=0"], 2, "evaluator.device: expected a string, got 0"),
    ("evaluator.resources GPU", ["evaluator.resources={GPU=1}"], 2, "evaluator.resources: expected a table of custom "),
    ("evaluator.strategy unknown", ['evaluator.strategy="pack"'], 2,
     "evaluator.strategy: expected one of ['default', 'spread'], got 'pack'"),
    ("evaluator.width 3", ["evaluator.width=3"], 2, "evaluator.width: expected an integer >= 4, got 3"),
    ("evaluator.gap_images 1", ["evaluator.gap_images=1"], 2, "evaluator.gap_images: expected an integer >= 2, got 1"),
    ("evaluator.final_seeds 0", ["evaluator.final_seeds=0"], 2,
     "evaluator.final_seeds: expected an integer >= 1, got 0"),
    ("evaluator.final_steps 0", ["evaluator.final_steps=0"], 2,
     "evaluator.final_steps: expected an integer >= 1, got 0"),
    ("evaluator.final_images -1", ["evaluator.final_images=-1"], 2,
     "evaluator.final_images: expected an integer >= 1, got -1"),
    ("evaluator.options a number", ["evaluator.options=3"], 2,
     "evaluator.options: expected a table of keyword options, got 3"),
    ("evaluator.ray a string", ['evaluator.ray="yes"'], 2, "evaluator.ray: expected true or false, got 'yes'"),
    ("evaluator unknown key", ["evaluator.epochs=3"], 2, "evaluator.epochs: unknown key; expected one of "),

    # --- [loop] and [ray] -------------------------------------------------------------------------
    ("loop.optimizer a number", ["loop.optimizer=3"], 2, "loop.optimizer: expected a string, got 3"),
    ("loop.budget 0", ["loop.budget=0"], 2, "loop.budget: expected an integer >= 1, got 0"),
    ("loop.budget a float", ["loop.budget=2.5"], 2, "loop.budget: expected an integer >= 1, got 2.5"),
    ("loop.candidates -1", ["loop.candidates=-1"], 2, "loop.candidates: expected an integer >= 1, got -1"),
    ("loop.options a list", ["loop.options=[1]"], 2, "loop.options: expected a table of keyword options, got [1]"),
    ("loop.keep_start a string", ['loop.keep_start="yes"'], 2, "loop.keep_start: expected true or false, got 'yes'"),
    ("ray.working_dir a number", ["ray.working_dir=3"], 2, "ray.working_dir: expected a string, got 3"),
    ("ray.py_modules a string", ['ray.py_modules="mod"'], 2, "ray.py_modules: expected "),
    ("ray.wait_report_s 0", ["ray.wait_report_s=0"], 2, "ray.wait_report_s: expected a finite number > 0, got 0"),
    ("ray.wait_timeout_s inf", ["ray.wait_timeout_s=inf"], 2,
     "ray.wait_timeout_s: expected a finite number > 0, got inf"),
    ("ray.wait_timeout_s -1", ["ray.wait_timeout_s=-1"], 2,
     "ray.wait_timeout_s: expected a finite number > 0, got -1"),

    # --- --set itself -----------------------------------------------------------------------------
    ("--set a dotted key with an empty part", ["loop..budget=3"], 2,
     "--set: expected a dotted key like generator.image_size, got 'loop..budget'"),
    ("--set through a value", ["loop.budget.x=3"], 2,
     "--set loop.budget.x: expected budget to be a table, got a value"),
]


def _argv(cmd: str, real, tmp_path, overrides: list[str]) -> list[str]:
    if cmd == "make-target":
        argv = ["make-target", str(SMOKE), "--out", str(tmp_path / "target"), "--workers", "0"]
        return argv + [a for o in overrides for a in ("--set", o)]
    sets = [a for o in tiny(real, *overrides) for a in ("--set", o)]
    return ["run", str(SMOKE), "--out", str(tmp_path / "run"), *sets]


@pytest.fixture
def no_ray(monkeypatch):
    """Ray may not start: a config is refused while it is loaded."""
    import loop.engine.render_pool
    import loop.run.state

    for module in (loop.run.state, loop.engine.render_pool):
        monkeypatch.setattr(module, "ensure_ray", lambda *a, **k: pytest.fail("Ray started before the refusal"))


@pytest.mark.parametrize("case,overrides,code,message", CASES, ids=[c[0] for c in CASES])
def test_a_bad_config_stops_in_one_line_before_anything_is_written(smoke_real, no_ray, tmp_path, capsys, case,
                                                                    overrides, code, message):
    cmd = "make-target" if any(o.startswith("target") for o in overrides) else "run"
    line = one_line_exit(capsys, _argv(cmd, smoke_real, tmp_path, overrides), code)
    assert line.startswith(f"dropt {cmd}: error: {message}"), (line, message)
    assert len(line) < 1000, "a value was not cut"
    assert list(tmp_path.iterdir()) == [], "the refusal wrote something"


CONFIG_FILES = [
    # (case, TOML appended to the smoke config, the message after "dropt run: error: " with {path})
    ("a 5,000-deep inline array", "deep = " + "[" * 5000 + "]" * 5000 + "\n",
     "config: expected values nested at most 32 deep in {path}, got deeper (too deep for Python's TOML parser)"),
    ("a 100-deep inline array", '[space."object.scale"]\nrange = ' + "[" * 100 + "]" * 100 + "\n",
     "space.object.scale.range: expected a value nested at most 32 deep, got deeper"),
    ("a range of 200,000 entries", '[space."object.scale"]\nrange = [' + ", ".join(["1.0"] * 200_000) + "]\n",
     "space.object.scale.range: expected [low, high], got [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, ...]"),
    ("a key both a table and a number", "[loop]\nbudget = 3\n[loop.budget]\nrounds = 3\n",
     "config: expected valid TOML in {path}, got: "),
    ("a NUL in a key", '[evaluator.options]\n"a\\u0000b" = 1\n',
     "evaluator.options: expected keys without NUL bytes, got 'a\\x00b'"),
    ("a NUL in a basic string", '[ray]\nworking_dir = "a\\u0000b"\n',
     "ray.working_dir: expected a string without NUL bytes, got 'a\\x00b'"),
    ("space overrides: class choices and a reversed range", '[space."object.class"]\nchoices = ["torus", "cone"]\n'
     '[space."object.scale"]\nrange = [1.2, 0.8]\n', "space.object.scale.range: expected low <= high, got [1.2, 0.8]"),
]


@pytest.mark.parametrize("case,toml,message", CONFIG_FILES, ids=[c[0] for c in CONFIG_FILES])
def test_a_bad_config_file_stops_in_one_line(smoke_real, no_ray, tmp_path, capsys, case, toml, message):
    path = tmp_path / "bad.toml"
    path.write_text(SMOKE.read_text() + "\n" + toml)
    line = one_line_exit(capsys, ["run", str(path), "--out", str(tmp_path / "run"),
                                  *[a for o in tiny(smoke_real) for a in ("--set", o)]], 2)
    assert line.startswith("dropt run: error: " + message.format(path=path)), (line, message)
    assert len(line) < 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


# --------------------------------------------------------------------------------------------
# overrides a parameter can take are applied
# --------------------------------------------------------------------------------------------

def test_narrowed_class_choices_are_the_only_classes_drawn_and_rendered():
    cfg = load_config(SMOKE, ['space."object.class".choices=["torus", "cone"]', 'space."object_count".mean=2.0'])
    gen = cfg.build_generator()
    try:
        family = gen.space["object.class"].family
        assert family.choices == ("torus", "cone") and family.logits == (0.0, 0.0)   # even odds
        draws = gen.space.sample(gen.space.to_vector(), 2000, np.random.default_rng(0))["object.class"]
        assert set(np.unique(draws)) == {0, 1}
        assert abs(np.mean(draws) - 0.5) < 0.05
        ds = render_dataset(gen, gen.space.to_vector(), 16, seed=0)
        names = {ds.categories[a.category_id - 1] for anns in ds.annotations for a in anns}
        assert names == {"torus", "cone"}
        assert ds.categories == ["cube", "sphere", "cylinder", "cone", "torus"]   # ids by the generator's names
    finally:
        gen.close()


def test_narrowed_choices_with_their_probabilities():
    cfg = load_config(SMOKE, ['space."object.class".choices=["sphere", "torus"]',
                              'space."object.class".probs=[0.9, 0.1]'])
    space = cfg.build_generator().space
    draws = space.sample(space.to_vector(), 4000, np.random.default_rng(1))["object.class"]
    np.testing.assert_allclose(np.bincount(draws.ravel(), minlength=2) / draws.size, [0.9, 0.1], atol=0.02)


def test_a_number_may_switch_between_number_families():
    cfg = load_config(SMOKE, ['space."object.scale".family="truncnormal"', 'space."object.scale".mean=1.5',
                              'space."object.scale".std=0.01'])
    space = cfg.build_generator().space
    assert space["object.scale"].family.kind == "truncnormal"
    assert space["object.scale"].family.lo == 0.3 and space["object.scale"].family.hi == 2.0  # the bounds kept
    draws = space.sample(space.to_vector(), 500, np.random.default_rng(2))["object.scale"]
    assert abs(draws.mean() - 1.5) < 0.01


def test_an_ordered_range_is_applied():
    space = load_config(SMOKE, ['space."object.scale".range=[0.8, 1.2]']).build_generator().space
    draws = space.sample(space.to_vector(), 500, np.random.default_rng(3))["object.scale"]
    assert 0.8 <= draws.min() and draws.max() <= 1.2


# --------------------------------------------------------------------------------------------
# the memory check other commands share
# --------------------------------------------------------------------------------------------

def test_the_memory_check_refuses_what_cannot_fit_and_passes_what_can():
    have = available_memory()
    assert have is not None and have > 0
    check_images_fit("--n", 100, 64)
    with pytest.raises(ConfigError) as e:
        check_images_fit("--n", have // (64 * 64 * 3) + 1, 64)
    assert str(e.value).startswith("--n: expected images that fit in memory (")
    assert "64×64×3 bytes each" in str(e.value)
