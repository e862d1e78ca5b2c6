"""``ebmlab train MODEL ...``: one subcommand per model family."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ebmlab.cli.options import (
    ConfigOption,
    DataDirOption,
    DatasetOption,
    DeviceOption,
    DtypeOption,
    OutOption,
    OverwriteOption,
    ProgressOption,
    ResumeOption,
    SeedOption,
    TensorBoardOption,
)
from ebmlab.cli.settings import (
    check_resume_alone,
    given_on_command_line,
    in_section,
    merged_settings,
    parse_sizes,
    read_settings_file,
    require_out,
)

app = typer.Typer(help="Train a model into a run folder.", no_args_is_help=True)


CD_OPTIONS = frozenset(
    {
        "epochs", "batch_size", "lr", "cd_k", "persistent", "momentum", "final_momentum",
        "momentum_switch_epoch", "weight_decay", "final_lr_fraction", "sparsity_target", "sparsity_cost",
    }
)  # fmt: skip


@app.command("rbm")
def train_rbm(
    context: typer.Context,
    dataset: DatasetOption = "digits",
    data_dir: DataDirOption = None,
    n_hidden: int = typer.Option(64, help="Number of hidden units."),
    visible: str = typer.Option(
        "bernoulli",
        help="bernoulli (binarised data) or gaussian (standardised pixels; lr 1e-3 and final momentum 0.5 unless given).",
    ),
    epochs: int = typer.Option(10, help="Passes over the training data."),
    batch_size: int = typer.Option(100, help="Minibatch size."),
    lr: float = typer.Option(0.05, help="Learning rate."),
    cd_k: int = typer.Option(1, help="Gibbs steps per update (the k of CD-k)."),
    persistent: bool = typer.Option(False, "--persistent", help="Persistent chains (PCD-k)."),
    momentum: float = typer.Option(0.5, help="Initial momentum."),
    final_momentum: float = typer.Option(0.9, help="Momentum after --momentum-switch-epoch."),
    momentum_switch_epoch: int = typer.Option(5, help="Epoch at which momentum switches."),
    weight_decay: float = typer.Option(1e-4, help="L2 penalty on the weights."),
    final_lr_fraction: float = typer.Option(
        1.0, help="The learning rate decays linearly to this fraction."
    ),
    sparsity_target: float | None = typer.Option(None, help="Target mean hidden activation."),
    sparsity_cost: float = typer.Option(0.0, help="Weight of the sparsity penalty."),
    binarization: str = typer.Option(
        "dynamic", help="threshold, stochastic (fixed) or dynamic (per epoch)."
    ),
    validation_fraction: float = typer.Option(
        0.1, help="Share of training data held out for monitoring."
    ),
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
    dtype: DtypeOption = "float32",
    config: ConfigOption = None,
    out: OutOption = None,
    resume: ResumeOption = None,
    overwrite: OverwriteOption = False,
    tensorboard: TensorBoardOption = False,
    progress: ProgressOption = True,
) -> None:
    """Train a Bernoulli RBM by CD-k or PCD-k."""
    from ebmlab.experiments.rbm import RBMExperimentConfig, resume_rbm, run_rbm

    if resume is not None:
        check_resume_alone(context)
        run = resume_rbm(resume, progress=progress)
    else:
        require_out(out)
        settings = merged_settings(
            context, config, model="rbm", paths=in_section("training", CD_OPTIONS)
        )
        if settings.get("visible") == "gaussian":
            from ebmlab.experiments.rbm import GAUSSIAN_DEFAULTS

            in_file = (
                (read_settings_file(config, model="rbm").get("training") or {}) if config else {}
            )
            settings.setdefault("training", {})
            for name, value in GAUSSIAN_DEFAULTS.items():
                if not given_on_command_line(context, name) and name not in in_file:
                    settings["training"][name] = value
        run = run_rbm(
            RBMExperimentConfig.from_dict(settings), out, overwrite=overwrite, progress=progress
        )
    typer.echo(f"run folder: {run.path}  (figures in {run.figures})")


@app.command("ebm2d")
def train_ebm2d(
    context: typer.Context,
    dataset: DatasetOption = "8gaussians",
    iterations: int = typer.Option(2000, help="Parameter updates."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    batch_size: int = typer.Option(256, help="Minibatch size."),
    n_steps: int = typer.Option(20, help="Langevin steps per update."),
    step_size: float = typer.Option(0.01, help="Langevin step size."),
    noise_scale: float | None = typer.Option(
        None, help="Langevin noise scale (default: calibrated, sqrt(2 step))."
    ),
    persistent: bool = typer.Option(
        True, "--persistent/--short-run", help="Replay buffer or short-run chains."
    ),
    l2_weight: float = typer.Option(0.01, help="L2 penalty on energies."),
    seed: SeedOption = 0,
    out: OutOption = None,
    resume: ResumeOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Train an MLP energy on a 2-D toy density with Langevin negatives."""
    from ebmlab.experiments.ebm2d import EBM2DConfig, run_ebm2d

    if resume is not None:
        check_resume_alone(context)
        path = run_ebm2d(None, resume, resume=True)
    else:
        require_out(out)
        config = EBM2DConfig(
            dataset=dataset,
            n_iterations=iterations,
            lr=lr,
            batch_size=batch_size,
            n_sampler_steps=n_steps,
            step_size=step_size,
            noise_scale=noise_scale,
            persistent=persistent,
            l2_weight=l2_weight,
            seed=seed,
        )
        path = run_ebm2d(config, out, overwrite=overwrite)
    typer.echo(f"run folder: {path}  (figures in {Path(path) / 'figures'})")


DBN_TRAINING = frozenset({"epochs", "batch_size", "lr", "cd_k", "persistent"})
DBN_FINETUNE = {
    "finetune_epochs": "epochs",
    "finetune_lr": "lr",
    "finetune_optimizer": "optimizer",
    "patience": "patience",
}


@app.command("dbn")
def train_dbn(
    context: typer.Context,
    dataset: DatasetOption = "digits",
    data_dir: DataDirOption = None,
    layers: str = typer.Option(
        "64,64", help="Hidden layer sizes, bottom to top, e.g. 500,500,2000."
    ),
    epochs: int = typer.Option(10, help="CD epochs per layer."),
    batch_size: int = typer.Option(100, help="Minibatch size of pretraining."),
    lr: float = typer.Option(0.05, help="Pretraining learning rate."),
    cd_k: int = typer.Option(1, help="Gibbs steps per update."),
    persistent: bool = typer.Option(False, "--persistent", help="PCD instead of CD."),
    binarization: str = typer.Option("dynamic", help="threshold, stochastic or dynamic."),
    propagation: str = typer.Option(
        "mean", help="Upper layers train on mean or sampled activations."
    ),
    init_from_below: bool = typer.Option(
        False, "--init-from-below", help="Start each RBM at the transpose of the one below."
    ),
    finetune_epochs: int = typer.Option(0, help="Epochs of discriminative fine-tuning (0: none)."),
    finetune_lr: float = typer.Option(1e-3, help="Fine-tuning learning rate."),
    finetune_optimizer: str = typer.Option("adam", help="adam or sgd."),
    patience: int = typer.Option(
        5, help="Early-stopping patience in epochs (0: never stop early)."
    ),
    n_labelled: int | None = typer.Option(
        None, help="Labelled examples used for fine-tuning (default all)."
    ),
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
    dtype: DtypeOption = "float32",
    config: ConfigOption = None,
    out: OutOption = None,
    resume: ResumeOption = None,
    overwrite: OverwriteOption = False,
    progress: ProgressOption = True,
) -> None:
    """Train a deep belief network greedily, layer by layer, then optionally fine-tune it."""
    from ebmlab.experiments.dbn import DBNExperimentConfig, resume_dbn, run_dbn

    if resume is not None:
        check_resume_alone(context)
        run = resume_dbn(resume, progress=progress)
    else:
        require_out(out)
        context.params["layers"] = parse_sizes("layers", layers)
        settings = merged_settings(
            context,
            config,
            model="dbn",
            paths=in_section("training", DBN_TRAINING) | in_section("finetune", DBN_FINETUNE),
        )
        run = run_dbn(
            DBNExperimentConfig.from_dict(settings), out, overwrite=overwrite, progress=progress
        )
    typer.echo(f"run folder: {run.path}  (figures in {run.figures})")


DBM_TRAINING = frozenset(
    {
        "epochs", "batch_size", "lr", "final_lr_fraction", "momentum", "final_momentum",
        "momentum_switch_epoch", "weight_decay", "max_norm", "n_chains", "gibbs_steps",
        "mean_field_iterations", "mean_field_tolerance", "damping", "pretrain",
    }
)  # fmt: skip
DBM_PRETRAINING = {
    "pretrain_epochs": "epochs",
    "pretrain_lr": "lr",
    "pretrain_cd_k": "cd_k",
    "pretrain_persistent": "persistent",
}


@app.command("dbm")
def train_dbm(
    context: typer.Context,
    dataset: DatasetOption = "digits",
    data_dir: DataDirOption = None,
    layers: str = typer.Option("64,64", help="Hidden layer sizes, bottom to top, e.g. 500,1000."),
    n_train: int | None = typer.Option(None, help="Use only the first N training images."),
    epochs: int = typer.Option(20, help="Epochs of joint training."),
    batch_size: int = typer.Option(100, help="Minibatch size."),
    lr: float = typer.Option(0.005, help="Joint-training learning rate."),
    final_lr_fraction: float = typer.Option(
        0.1, help="The learning rate decays linearly to this fraction."
    ),
    momentum: float = typer.Option(0.5, help="Initial momentum."),
    final_momentum: float = typer.Option(0.9, help="Momentum after --momentum-switch-epoch."),
    momentum_switch_epoch: int = typer.Option(5, help="Epoch at which momentum switches."),
    weight_decay: float = typer.Option(2e-4, help="L2 penalty on the weights."),
    max_norm: float | None = typer.Option(
        None, help="Maximum norm of each unit's incoming weights."
    ),
    n_chains: int = typer.Option(100, help="Persistent chains for the model term."),
    gibbs_steps: int = typer.Option(5, help="Block Gibbs sweeps of the chains per update."),
    mean_field_iterations: int = typer.Option(10, help="Mean-field iterations for the data term."),
    mean_field_tolerance: float = typer.Option(1e-5, help="Mean-field stopping tolerance."),
    damping: float = typer.Option(0.0, help="Mean-field damping in [0, 1)."),
    pretrain: bool = typer.Option(
        True, "--pretrain/--no-pretrain", help="Greedy pretraining with doubled RBMs."
    ),
    pretrain_epochs: int = typer.Option(10, help="CD epochs per pretrained RBM."),
    pretrain_lr: float = typer.Option(0.05, help="Pretraining learning rate."),
    pretrain_cd_k: int = typer.Option(1, help="Gibbs steps per pretraining update."),
    pretrain_persistent: bool = typer.Option(
        True, "--pretrain-persistent/--pretrain-cd", help="PCD or CD for pretraining."
    ),
    classifier_epochs: int = typer.Option(
        0, help="Epochs of a softmax head on mean-field features (0: none)."
    ),
    fine_tune_epochs: int = typer.Option(
        0, help="Then epochs fine-tuning the whole unrolled network."
    ),
    classifier_lr: float = typer.Option(1e-3, help="Classifier learning rate."),
    binarization: str = typer.Option("dynamic", help="threshold, stochastic or dynamic."),
    validation_fraction: float = typer.Option(
        0.1, help="Share of training data held out for monitoring."
    ),
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
    dtype: DtypeOption = "float32",
    config: ConfigOption = None,
    out: OutOption = None,
    resume: ResumeOption = None,
    overwrite: OverwriteOption = False,
    progress: ProgressOption = True,
) -> None:
    """Train a deep Boltzmann machine: doubled-RBM pretraining, then mean-field + persistent chains."""
    from ebmlab.experiments.dbm import DBMExperimentConfig, resume_dbm, run_dbm

    if resume is not None:
        check_resume_alone(context)
        run = resume_dbm(resume, progress=progress)
    else:
        require_out(out)
        context.params["layers"] = parse_sizes("layers", layers)
        paths = {"layers": "hidden_sizes"} | in_section("training", DBM_TRAINING)
        paths |= in_section("training.pretraining", DBM_PRETRAINING)
        settings = merged_settings(context, config, model="dbm", paths=paths)
        run = run_dbm(
            DBMExperimentConfig.from_dict(settings), out, overwrite=overwrite, progress=progress
        )
    typer.echo(f"run folder: {run.path}  (figures in {run.figures})")


BM_RENAMES = {"epochs": "n_epochs", "lr": "learning_rate", "gibbs_steps": "n_gibbs_steps"}


@app.command("bm")
def train_bm(
    context: typer.Context,
    dataset: DatasetOption = "bars-and-stripes",
    image_size: int = typer.Option(4, help="Side of the bars-and-stripes images."),
    n_hidden: int = typer.Option(0, help="Hidden units (0: fully visible Boltzmann machine)."),
    epochs: int = typer.Option(500, help="Passes over the data."),
    batch_size: int = typer.Option(30, help="Minibatch size."),
    lr: float = typer.Option(0.05, help="Learning rate."),
    momentum: float = typer.Option(0.9, help="Momentum."),
    weight_decay: float = typer.Option(0.0, help="L2 penalty on the couplings."),
    data_term: str = typer.Option("exact", help="exact (enumerated posterior) or mean_field."),
    model_term: str = typer.Option("exact", help="exact (enumeration) or pcd (persistent chains)."),
    n_chains: int = typer.Option(100, help="Persistent chains (with --model-term pcd)."),
    gibbs_steps: int = typer.Option(1, help="Gibbs sweeps of the chains per update."),
    scan: str = typer.Option("systematic", help="systematic or random scan Gibbs."),
    seed: SeedOption = 0,
    dtype: DtypeOption = "float32",
    config: ConfigOption = None,
    out: OutOption = None,
    resume: ResumeOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Train a general Boltzmann machine (fully visible or with hidden units)."""
    from ebmlab.experiments.bm import BMConfig, run_bm
    from ebmlab.experiments.run_folder import RunFolder

    if resume is not None:
        check_resume_alone(context)
        path = run_bm(BMConfig.from_dict(RunFolder(resume).read_config()), resume, resume=True)
    else:
        require_out(out)
        settings = merged_settings(context, config, model="bm", paths=BM_RENAMES)
        path = run_bm(BMConfig.from_dict(settings), out, overwrite=overwrite)
    typer.echo(f"run folder: {path}  (figures in {Path(path) / 'figures'})")


JEM_TRAINING = frozenset(
    {
        "batch_size", "lr", "warmup_iterations", "decay_iterations", "decay_rate", "p_x_weight",
        "p_x_given_y_weight", "n_steps", "step_size", "noise_scale", "buffer_size", "reinit_prob",
        "buffer_init", "class_conditional", "clamp", "sampling_dtype", "l2_weight", "data_noise",
        "divergence_threshold", "max_rollbacks", "rollback_lr_factor", "checkpoint_every", "log_every",
    }
)  # fmt: skip


@app.command("jem")
def train_jem(
    context: typer.Context,
    dataset: DatasetOption = "digits",
    data_dir: DataDirOption = None,
    backbone: str = typer.Option(
        "small-cnn", help="small-cnn, wrn (WideResNet, no normalisation) or mlp."
    ),
    width: int = typer.Option(16, help="Width of the small CNN."),
    depth: int = typer.Option(28, help="WideResNet depth."),
    widen_factor: int = typer.Option(10, help="WideResNet widening factor."),
    hidden_sizes: str = typer.Option("256,256", help="MLP hidden sizes."),
    n_train: int | None = typer.Option(None, help="Use only the first N training images."),
    iterations: int = typer.Option(1000, help="Training iterations."),
    batch_size: int = typer.Option(64, help="Minibatch size."),
    lr: float = typer.Option(1e-4, help="Adam learning rate."),
    warmup_iterations: int = typer.Option(1000, help="Linear learning-rate warm-up."),
    decay_iterations: str = typer.Option(
        "", help="Iterations at which the lr is multiplied by --decay-rate, e.g. 160000,180000."
    ),
    decay_rate: float = typer.Option(0.3, help="Step-decay factor."),
    p_x_weight: float = typer.Option(
        1.0, help="Weight of the generative term (0: the plain classifier)."
    ),
    p_x_given_y_weight: float = typer.Option(0.0, help="Weight of the optional log p(x|y) term."),
    n_steps: int = typer.Option(20, help="SGLD steps per iteration."),
    step_size: float = typer.Option(1.0, help="SGLD step size."),
    noise_scale: float = typer.Option(0.01, help="SGLD noise scale."),
    buffer_size: int = typer.Option(10000, help="Replay buffer size."),
    reinit_prob: float = typer.Option(0.05, help="Probability of restarting a chain from noise."),
    buffer_init: str = typer.Option(
        "uniform", help="uniform, class-gaussian or class-gaussian-diagonal (JEM++)."
    ),
    class_conditional: bool = typer.Option(
        False, "--class-conditional", help="Buffer split per class."
    ),
    clamp: bool = typer.Option(False, "--clamp", help="Clamp samples to [-1, 1] (JEM++)."),
    sampling_dtype: str = typer.Option(
        "float32",
        help="float32 or bfloat16: precision of the SGLD passes (bfloat16: faster on CPUs "
        "with AMX and recent GPUs).",
    ),
    l2_weight: float = typer.Option(0.0, help="L2 penalty on energies (about 0.1 stabilises)."),
    data_noise: float = typer.Option(0.03, help="Standard deviation of the noise added to data."),
    divergence_threshold: float = typer.Option(
        1e4, help="|loss| or |energy| above this counts as divergence."
    ),
    max_rollbacks: int = typer.Option(
        5, help="Rollbacks to the last good checkpoint before giving up."
    ),
    rollback_lr_factor: float = typer.Option(1.0, help="Multiply the lr by this at each rollback."),
    checkpoint_every: int = typer.Option(100, help="Iterations between checkpoints."),
    log_every: int = typer.Option(10, help="Iterations between metrics lines."),
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
    config: ConfigOption = None,
    out: OutOption = None,
    resume: ResumeOption = None,
    overwrite: OverwriteOption = False,
    tensorboard: TensorBoardOption = False,
    progress: ProgressOption = True,
) -> None:
    """Train JEM: a classifier whose logits also define an energy, with SGLD negatives (Algorithm 1).

    Under `torchrun --nproc_per_node N -m ebmlab train jem ...` it trains with
    DistributedDataParallel (gloo on CPU, nccl on GPU).
    """
    from ebmlab.experiments.jem import JEMExperimentConfig, resume_jem, run_jem

    if resume is not None:
        check_resume_alone(context, allowed=("iterations",))
        extend = iterations if given_on_command_line(context, "iterations") else None
        run = resume_jem(resume, n_iterations=extend, progress=progress)
    else:
        require_out(out)
        context.params["hidden_sizes"] = parse_sizes("hidden_sizes", hidden_sizes)
        context.params["decay_iterations"] = parse_sizes("decay_iterations", decay_iterations)
        paths = {"iterations": "training.n_iterations"} | in_section("training", JEM_TRAINING)
        settings = merged_settings(context, config, model="jem", paths=paths)
        run = run_jem(
            JEMExperimentConfig.from_dict(settings), out, overwrite=overwrite, progress=progress
        )
    if os.environ.get("RANK", "0") == "0":  # one line from rank 0 under torchrun
        typer.echo(f"run folder: {run.path}  (figures in {run.figures})")
