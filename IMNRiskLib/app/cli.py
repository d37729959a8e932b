"""The `imnrisk` command line: exit 0 ok, 2 bad input (one line naming file/ID/field), 1 internal error."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

from IMNRiskLib import RESEARCH_ONLY, __version__
from IMNRiskLib.core.errors import InputError, InputErrors
from IMNRiskLib.app.arguments import argument_names, check_argument_text
from IMNRiskLib.app.demo import cmd_demo, cmd_synth
from IMNRiskLib.app.summaries import (EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK,  # noqa: F401  (the exit codes, importable here)
                                      print_external_summary, print_training_summary, report_errors, say)

# Each command imports the modules it uses inside its function (start-up time): `imnrisk --help`, and every
# command, loads only what that command needs (predict: no pandas, scipy.stats, sklearn, matplotlib).


# --------------------------------------------------------------------------- extract

def cmd_extract(args: argparse.Namespace) -> int:
    """Extract radiomics features of every case of a manifest."""
    from IMNRiskLib.radiomics import features  # start-up time: only this command loads it
    from IMNRiskLib.inputs.cohort import read_cohort  # start-up time: only this command loads it
    from IMNRiskLib.core.files import check_not_inputs, safe_outputs  # start-up time: only this command loads it
    from IMNRiskLib.inputs.schema import load_schema  # start-up time: only this command loads it

    from IMNRiskLib.core.workers import check_dask_address  # start-up time: only this command loads it
    check_dask_address(args.dask)
    if not 0.0 <= args.mask2_min_dice <= 1.0:
        raise InputError(f"{args.mask2_min_dice:g} is not a Dice coefficient (0 to 1)", field="--mask2-min-dice")
    paths = features.output_paths(args.out)
    outputs = safe_outputs([args.out, *[p for k, p in paths.items() if k != "features"]],
                           [args.cohort, args.params, args.schema], args.force, folder=paths["features"].parent)
    cohort = read_cohort(args.cohort, load_schema(args.schema))
    check_not_inputs(paths.values(), [p for c in cohort.cases for p in (c.image, c.mask, c.mask2) if p is not None])
    settings = features.load_settings(args.params)
    cache_dir = Path(args.cache) if args.cache else Path(args.out).resolve().parent / ".imnrisk-cache"
    with outputs.locked():  # one run per output folder; proves it writable first (write_run stages the set)
        run = features.extract_cohort(cohort, settings, cache_dir, jobs=args.jobs, dask_address=args.dask,
                                      show_bar=not args.quiet, min_dice=args.mask2_min_dice)
        features.write_run(run, args.out)
    for warning in run.warnings:
        say(f"imnrisk: warning: {warning}")
    say_phase_choices(run.provenance["cases"])
    report_errors([InputError(f["reason"], file=f["file"] or str(cohort.path), id=f["ID"], field=f["field"] or None)
                   for f in run.failures])
    n, ok = len(cohort.cases), len(run.features)
    say(f"imnrisk extract: {ok} of {n} case(s) extracted ({run.cached} from cache), "
        f"{len(run.failures)} failed; {run.features.shape[1]} features -> {paths['features']}"
        + (f"; second reader (Mask2): {len(run.reader2.features)} of {len(cohort.second_reader)} case(s) -> "
           f"{paths['reader2']}" if run.reader2 is not None else "")
        + (f"; failures -> {paths['failures']}" if run.failures else ""))
    return EXIT_INPUT if run.failures else EXIT_OK


def say_phase_choices(cases: dict) -> None:
    """One line per distinct phase choice of the extracted cases (how many phases, how ordered, which scored)."""
    counts: dict = {}
    for record in cases.values():
        if record.get("phases"):
            counts[record["phases"]] = counts.get(record["phases"], 0) + 1
    for note, count in counts.items():
        say(f"imnrisk extract: phases of {count} case(s): {note}")


# --------------------------------------------------------------------------- stats and tables

def cmd_stats(args: argparse.Namespace) -> int:
    """Evaluate every score column of a predictions table against the outcome."""
    import json  # start-up time: json loads only when used
    # start-up time: only this command loads it
    from IMNRiskLib.stats.evaluation import evaluate_predictions, format_evaluation
    result = evaluate_predictions(args.predictions, args.outcome)
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        print(format_evaluation(result))
    return EXIT_OK


def cmd_tables(args: argparse.Namespace) -> int:
    """Table 1 and Table 2 of a cohort (clinical data only)."""
    from IMNRiskLib.modelling.protocols import training_options  # start-up time: only this command loads it
    from IMNRiskLib.outputs.tables import write_tables  # start-up time: only this command loads it
    options = training_options(args.protocol)  # the protocol's multivariable step: test and collinearity screen
    paths = write_tables(args.cohort, args.out, args.schema, args.entry_p, args.keep_p, args.force,
                         options.clinical_test, options.clinical_collinear)
    say(f"imnrisk tables: {', '.join(str(p) for p in paths)}")
    return EXIT_OK


# --------------------------------------------------------------------------- train, predict, validate

def _training_options(args: argparse.Namespace):
    from IMNRiskLib.modelling.protocols import training_options  # start-up time: only this command loads it
    extra = {"clinical_test": args.clinical_test} if getattr(args, "clinical_test", None) else {}
    return training_options(getattr(args, "protocol", "imnrisk"), seed=args.seed, lasso_rule=args.lasso_rule, **extra)


def cmd_train(args: argparse.Namespace) -> int:
    """Build, validate and save the three models."""
    from IMNRiskLib.app.training import OUTPUTS, check_counts, train  # start-up time: only this command loads it
    from IMNRiskLib.modelling.protocols import use_icc  # start-up time: only this command loads it
    from IMNRiskLib.core.files import safe_outputs  # start-up time: only this command loads it
    from IMNRiskLib.outputs.report import render  # start-up time: only this command loads it
    out = Path(args.out)
    outputs = safe_outputs([out / name for name in OUTPUTS + ("report.html",)],
                           [args.cohort, args.features, args.schema, args.features2], args.force, folder=out,
                           user_folder=True)
    check_counts(args.cv_folds, args.cv_repeats, args.bootstrap)
    from IMNRiskLib.core.workers import check_dask_address  # start-up time: only this command loads it
    check_dask_address(args.dask)
    # one run per folder; every output staged and moved in at the end (model.json last), or none
    with outputs.writing(last="model.json") as stage:
        metrics = train(args.cohort, args.features, stage, args.schema, _training_options(args), args.cv_folds,
                        args.cv_repeats, args.bootstrap, args.jobs, show_bar=not args.quiet,
                        shrink=None if args.shrink == "none" else args.shrink,
                        reader2_path=args.features2, icc_threshold=args.icc_threshold,
                        use_icc=use_icc(args.protocol, args.icc_threshold, args.no_icc),
                        keep_replicates=not args.no_ci_replicates, dask=args.dask, force=args.force)
        report = out / render(stage, args.jobs).name  # the validation's warm workers draw half the figures
    print_training_summary(metrics, out)
    say(f"  report: {report}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Re-render report.html from a training folder."""
    from IMNRiskLib.core.files import safe_outputs  # start-up time: only this command loads it
    from IMNRiskLib.outputs.report import render  # start-up time: only this command loads it
    folder = Path(args.dir)
    safe_outputs([folder / "report.html"], [], args.force)  # figures/ holds its images: rewritten with it
    try:
        page = render(folder)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:  # every input is a file of the folder
        if os.environ.get("IMNRISK_DEBUG"):
            raise
        raise InputError(f"a file of the training folder holds a key or value the report cannot use "
                         f"({type(exc).__name__}: {str(exc)[:80]}); re-run imnrisk train", file=str(folder)) from None
    say(f"imnrisk report: {page}")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    """Score one patient through the scoring core and render its Prediction (verdict first)."""
    import json  # start-up time: json loads only when used
    from IMNRiskLib.scoring.modelfile import ScoringModel  # start-up time: only this command loads it
    from IMNRiskLib.scoring import Options, score_case  # start-up time: only this command loads it
    # start-up time: only this command loads it
    from IMNRiskLib.scoring.core import case_from_files, check_request, clinical_pairs
    if args.dicom_out:  # the output rule first, before anything is read
        from IMNRiskLib.outputs.dicomout import check_target  # start-up time: only this command loads it
        check_target(args.image, args.dicom_out, args.force, [args.model, args.image, args.mask, args.trusted_key])
    if str(args.label).lstrip("-").isdigit() and int(args.label) < 1:
        raise InputError(f"label {args.label} must be 1 or more (0 is background)", field="--label")
    model = ScoringModel.load(args.model)
    if args.trusted_key:  # refuse unsigned or wrongly signed models
        from IMNRiskLib.scoring.signing import verify_model  # start-up time: only this command loads it
        verify_model(model.doc, args.trusted_key, str(args.model))
    label = int(args.label) if str(args.label).isdigit() else args.label
    options = Options(ci=args.ci, allow_version_mismatch=args.allow_version_mismatch)
    clinical = clinical_pairs(args.clinical)
    try:
        check_request(model, clinical, options)  # cheap: refuse before the image is read
    except InputError as exc:
        raise (exc.located(file=str(args.model)) if exc.field == "--ci" else exc) from None
    case = case_from_files(model, args.image, args.mask, args.phase, label, args.image_is_phase)
    prediction = score_case(model, case, clinical, options)
    if case.loaded.phase_note:  # said once scored: a refusal stays one line
        say(f"imnrisk predict: image: {case.loaded.phase_note}")
    result = prediction.to_dict()
    if args.dicom_out:
        from IMNRiskLib.outputs.dicomout import export_case  # start-up time: only this command loads it
        written = export_case(args.dicom_out, args.image, args.mask, result, model, label, args.force)
        say(f"imnrisk predict: DICOM SEG -> {written.seg}; SR -> {written.sr}")
    if args.json:
        for warning in prediction.warnings:  # the text output lists them; beside JSON, stderr does
            say(f"imnrisk: warning: {warning}")
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(prediction.lines()))
    if args.strict and not prediction.verdict.reliable:
        say(f"imnrisk predict: {prediction.verdict.headline} (--strict)")
        return EXIT_INPUT
    return EXIT_OK


def cmd_pacs(args: argparse.Namespace) -> int:
    """Retrieve a study's MR series from a DICOM node, score it, store SEG + SR back."""
    import json  # start-up time: json loads only when used
    from IMNRiskLib.outputs import dicomout  # start-up time: only this command loads it
    from IMNRiskLib.core.files import safe_outputs  # start-up time: only this command loads it
    from IMNRiskLib.app.pacs import load_pacs_settings, score_study  # start-up time: only this command loads it
    targets = dicomout.output_paths(args.out)
    safe_outputs([targets.seg, targets.sr], [args.model, args.config, args.mask], args.force)
    settings = load_pacs_settings(args.config)
    label = int(args.label) if str(args.label).isdigit() else args.label
    from IMNRiskLib.scoring.core import clinical_pairs  # start-up time: only this command loads it
    result, lines = score_study(settings, args.model, args.study, args.mask, args.out, clinical_pairs(args.clinical),
                                args.series, args.phase, label, send=not args.no_store, force=args.force)
    files = result["files"]
    say(f"imnrisk pacs: series -> {files['source']}; SEG {files['seg']}, SR {files['sr']}"
        + (f" stored on {settings.called_ae}@{settings.host}:{settings.port}" if result["stored"] else " (not stored)"))
    print(json.dumps(result, indent=2) if args.json else "\n".join(lines))
    return EXIT_OK


def cmd_web(args: argparse.Namespace) -> int:
    """The browser face (trame-slicer), loopback unless a token is set."""
    from IMNRiskWeb.server import WebOptions, serve  # start-up time: IMNRiskWeb loads only when used
    options = WebOptions(model=args.model, models_dir=args.models, trusted_key=args.trusted_key,
                         max_upload_mb=args.max_upload_mb, max_sessions=args.max_sessions,
                         idle_minutes=args.idle_minutes, grace_seconds=args.grace_seconds)
    return serve(args.model, host=args.host, port=args.port, random_token=args.random_token, options=options)


def cmd_validate(args: argparse.Namespace) -> int:
    """External validation of a frozen model on a new cohort."""
    from IMNRiskLib.core.files import safe_outputs  # start-up time: only this command loads it
    from IMNRiskLib.app.predict import validate_external  # start-up time: only this command loads it
    out = Path(args.out)
    written = ("validation.json", "predictions.csv") + (("model_recalibrated.json",) if args.recalibrate else ())
    outputs = safe_outputs([out / n for n in written], [args.model, args.cohort, args.features], args.force,
                           folder=out)
    with outputs.locked():
        result = validate_external(args.model, args.cohort, out, args.features, args.jobs, args.recalibrate,
                                   args.force, show_bar=not args.quiet)
    print_external_summary(result, Path(args.out) / 'validation.json')
    return EXIT_OK


# --------------------------------------------------------------------------- model signing

def cmd_keygen(args: argparse.Namespace) -> int:
    """Make an Ed25519 key pair for signing models."""
    from IMNRiskLib.scoring.signing import generate_key_pair  # start-up time: only this command loads it
    private, public = generate_key_pair(args.prefix, args.force)
    say(f"imnrisk keygen: private key {private} (keep it secret), public key {public} (give it to users)")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    """Sign a model file with a private key."""
    from IMNRiskLib.scoring.signing import sign_model  # start-up time: only this command loads it
    say(f"imnrisk sign: {sign_model(args.model, args.key, args.out, args.force)} signed")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a model's signature against a trusted public key (exit 2 when it does not hold)."""
    from IMNRiskLib.scoring.signing import verify_model  # start-up time: only this command loads it
    from IMNRiskLib.scoring.modelfile import read_model_document  # start-up time: only this command loads it
    fingerprint = verify_model(read_model_document(args.model), args.trusted_key, str(args.model))
    say(f"imnrisk verify: {args.model}: signature valid, key SHA-256 {fingerprint[:16]}")
    return EXIT_OK


# --------------------------------------------------------------------------- parser

def _add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """--jobs, --quiet and --force, shared by the long-running commands."""
    p.add_argument("--jobs", type=int, default=0, help="worker processes (default 0: every core); negative counts "
                   "from the number of cores, as joblib: -1 every core, -2 all but one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_force(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imnrisk",
        description="IMN metastasis risk from DCE-MRI radiomics and clinical factors. " + RESEARCH_ONLY)
    parser.add_argument("--version", action="version", version=f"imnrisk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add_command in (_add_extract_command, _add_tables_command, _add_stats_command, _add_train_command,
                        _add_report_command, _add_predict_command, _add_pacs_command, _add_web_command, _add_keygen_command,
                        _add_sign_command, _add_verify_command, _add_validate_command, _add_synth_command, _add_demo_command):
        add_command(sub)
    return parser


def _add_extract_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk extract` and its options."""
    p = sub.add_parser("extract", help="radiomics features of every case of a cohort manifest")
    p.add_argument("cohort", help="cohort.csv (ID, Image, Mask[, Phase, Label, ...])")
    p.add_argument("--out", required=True, help="features.csv to write (provenance and failures beside it)")
    p.add_argument("--params", help="pyradiomics parameter YAML (default: IMNRisk's dce_mri.yaml)")
    p.add_argument("--schema", help="clinical schema YAML (default: the paper's)")
    p.add_argument("--dask", metavar="ADDRESS", help="send cases to a Dask distributed scheduler instead of --jobs")
    p.add_argument("--cache", help="per-case cache folder (default: .imnrisk-cache beside --out)")
    p.add_argument("--mask2-min-dice", type=float, default=0.5, metavar="D",
                   help="refuse a second reader's Mask2 that overlaps the case's Mask by a Dice coefficient below D "
                        "(default 0.5): it is not the same tumour read twice")
    _add_run_options(p)
    p.set_defaults(func=cmd_extract)


def _add_tables_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk tables` and its options."""
    p = sub.add_parser("tables", help="Table 1 and Table 2 (univariate and multivariable logistic) of a cohort")
    p.add_argument("cohort", help="cohort.csv with the outcome and the clinical variables")
    p.add_argument("--out", required=True, help="output folder (table1.csv, table2.csv and HTML fragments)")
    p.add_argument("--schema", help="clinical schema YAML (default: the paper's variables)")
    p.add_argument("--entry-p", type=float, default=0.10, help="univariate p to enter the multivariable model (0.10)")
    p.add_argument("--keep-p", type=float, default=0.05, help="multivariable p to keep a factor (0.05)")
    p.add_argument("--protocol", choices=("imnrisk", "paper"), default="imnrisk",
                   help="multivariable step: IMNRisk's (collinear pairs screened, likelihood-ratio backward "
                        "elimination) or the paper's (every entered variable in one model, Wald p)")
    _add_force(p)
    p.set_defaults(func=cmd_tables)


def _add_stats_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk stats` and its options."""
    p = sub.add_parser("stats", help="ROC/DeLong, calibration, Hosmer-Lemeshow, DCA of score columns")
    p.add_argument("predictions", help="CSV: an outcome column and one column per score")
    p.add_argument("--outcome", help="outcome column (default: IMN, else y)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_stats)


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk train` and its options."""
    p = sub.add_parser("train", help="build and validate the clinical, radiomics and combined models")
    p.add_argument("cohort", help="cohort.csv with outcome and clinical variables")
    p.add_argument("--features", required=True, help="features.csv from imnrisk extract")
    p.add_argument("--out", required=True, help="output folder (model.json, metrics.json, tables)")
    p.add_argument("--schema", help="clinical schema YAML (default: the paper's variables)")
    p.add_argument("--cv-folds", type=int, default=5)
    p.add_argument("--cv-repeats", type=int, default=100, help="repeats of K-fold CV, nested and leaky (0: none)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for optimism (0: none)")
    p.add_argument("--lasso-rule", choices=("min", "1se"), default="min", help="lambda.min or the 1-SE rule")
    p.add_argument("--clinical-test", choices=("lrt", "wald"), default=None,
                   help="clinical backward elimination by likelihood ratio (R drop1/step; the default) or the paper's "
                        "Wald p (the default of --protocol paper)")
    p.add_argument("--protocol", choices=("imnrisk", "paper"), default="imnrisk",
                   help="selection chain: IMNRisk's (default) or the paper's exactly (README: deviations)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shrink", choices=("none", "bootstrap"), default="none",
                   help="bootstrap: shrink the combined model's coefficients by its bootstrap-corrected calibration "
                        "slope, intercept re-estimated (the saved model is the shrunk one)")
    _add_icc_options(p)
    p.add_argument("--no-ci-replicates", action="store_true", help="do not keep the bootstrap replicates in "
                   "model.json (smaller file; predict --ci bootstrap then impossible)")
    p.add_argument("--dask", metavar="ADDRESS", help="send CV folds and bootstrap fits to a Dask distributed "
                   "scheduler instead of --jobs (same results)")
    _add_run_options(p)
    p.set_defaults(func=cmd_train)


def _add_report_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk report` and its options."""
    p = sub.add_parser("report", help="re-render report.html from a training folder")
    p.add_argument("dir", help="the --out folder of imnrisk train")
    _add_force(p)
    p.set_defaults(func=cmd_report)


def _add_predict_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk predict` and its options."""
    p = sub.add_parser("predict", help="score one patient with a model file")
    p.add_argument("model", help="model.json")
    p.add_argument("--image", required=True)
    p.add_argument("--mask", required=True)
    p.add_argument("--phase", type=int, help="0-based phase (default: the second of a multi-phase series)")
    p.add_argument("--label", default="1", help="label value or segment name (default 1)")
    p.add_argument("--clinical", nargs="*", metavar="NAME=VALUE", help="the model's clinical factors")
    p.add_argument("--json", action="store_true")
    p.add_argument("--dicom-out", metavar="DIR", help="also write the tumour as DICOM SEG and the result as "
                   "DICOM SR (TID 1500) into DIR (the image must be a DICOM series)")
    _add_force(p)
    p.add_argument("--allow-version-mismatch", action="store_true",
                   help="score even if the model's pyradiomics/IMNRisk extraction versions differ from these")
    p.add_argument("--trusted-key", metavar="KEY.pub", help="refuse the model unless signed by this public key")
    p.add_argument("--ci", choices=("wald", "bootstrap"), default="wald",
                   help="risk CI: wald (combined model, Rad-Score taken as known; default) or bootstrap (the whole "
                   "pipeline's replicates kept by train: needs their features and clinical factors too)")
    p.add_argument("--image-is-phase", type=int, metavar="K",
                   help="the image is a single phase exported from its DCE series: phase index K (0-based), "
                   "compared with the phase the model was trained on")
    p.add_argument("--strict", action="store_true",
                   help="exit 2 when the verdict is 'not reliable' (the result is still printed)")
    p.set_defaults(func=cmd_predict)


def _add_pacs_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk pacs` and its options."""
    p = sub.add_parser("pacs", help="retrieve a study from a PACS, score it, store the SEG and SR back")
    p.add_argument("model", help="model.json")
    p.add_argument("--config", required=True, help="PACS settings YAML (called_ae, host, port, calling_ae, "
                   "retrieve: get|move, move_port)")
    p.add_argument("--study", required=True, metavar="UID", help="StudyInstanceUID")
    p.add_argument("--series", metavar="UID", help="SeriesInstanceUID (default: the study's only MR series)")
    p.add_argument("--mask", required=True, help="tumour mask on the series' grid (labelmap or .seg.nrrd)")
    p.add_argument("--phase", type=int, help="0-based phase (default: the second of a multi-phase series)")
    p.add_argument("--label", default="1", help="label value or segment name (default 1)")
    p.add_argument("--clinical", nargs="*", metavar="NAME=VALUE", help="the model's clinical factors")
    p.add_argument("--out", required=True, help="folder for the retrieved series and the SEG + SR")
    p.add_argument("--no-store", action="store_true", help="write SEG + SR locally only")
    p.add_argument("--json", action="store_true")
    _add_force(p)
    p.set_defaults(func=cmd_pacs)


def _add_web_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk web` and its options."""
    p = sub.add_parser("web", help="the scoring workflow in the browser (needs the 'web' extra)")
    p.add_argument("--model", help="model.json whose clinical form and scoring the page uses")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other "
                   "needs IMNRISK_WEB_TOKEN or --random-token)")
    p.add_argument("--random-token", action="store_true", help="require a random token, printed at start")
    p.add_argument("--models", metavar="DIR", help="offer the model files of this folder in the page")
    p.add_argument("--trusted-key", metavar="KEY.pub", help="offer (and use) only models signed by this key")
    p.add_argument("--max-upload-mb", type=int, default=1024, help="refuse larger uploads (default 1024)")
    p.add_argument("--max-sessions", type=int, default=4,
                   help="browser sessions at once, one server process each (default 4)")
    p.add_argument("--idle-minutes", type=float, default=30.0,
                   help="end a session (and remove its uploads) after this long without use (default 30)")
    p.add_argument("--grace-seconds", type=float, default=30.0,
                   help="end a session this long after its tab was closed (default 30)")
    p.set_defaults(func=cmd_web)


def _add_keygen_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk keygen` and its options."""
    p = sub.add_parser("keygen", help="make an Ed25519 key pair for signing models")
    p.add_argument("prefix", help="writes PREFIX.key (private) and PREFIX.pub (public)")
    _add_force(p)
    p.set_defaults(func=cmd_keygen)


def _add_sign_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk sign` and its options."""
    p = sub.add_parser("sign", help="sign a model file (Ed25519)")
    p.add_argument("model", help="model.json")
    p.add_argument("--key", required=True, help="private key (imnrisk keygen)")
    p.add_argument("--out", help="signed model to write (default: sign in place); never the key or the model "
                   "itself, and an existing file only with --force")
    _add_force(p)
    p.set_defaults(func=cmd_sign)


def _add_verify_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk verify` and its options."""
    p = sub.add_parser("verify", help="check a model's signature against a trusted public key")
    p.add_argument("model", help="model.json")
    p.add_argument("--trusted-key", required=True, metavar="KEY.pub")
    p.set_defaults(func=cmd_verify)


def _add_validate_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk validate` and its options."""
    p = sub.add_parser("validate", help="external validation of a frozen model on a new cohort")
    p.add_argument("model", help="model.json")
    p.add_argument("cohort", help="cohort.csv with outcomes")
    p.add_argument("--out", required=True)
    p.add_argument("--features", help="features.csv (default: extract the cohort with the model's settings)")
    p.add_argument("--recalibrate", action="store_true", help="also save a logistically recalibrated model")
    _add_run_options(p)
    p.set_defaults(func=cmd_validate)


def _add_synth_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk synth` and its options."""
    p = sub.add_parser("synth", help="write a synthetic DCE-MRI phantom cohort with a known truth")
    p.add_argument("dir", help="output folder (cohort.csv, cases/, truth.json)")
    _add_synth_options(p)
    p.add_argument("--full-size", action="store_true", help="512x512x100 at 0.66x0.66x2 mm (benchmarks)")
    p.add_argument("--dicom", action="store_true", help="multi-phase DICOM series instead of 4-D NRRD, with the "
                   "tumour also as DICOM SEG and RTSTRUCT (rt-utils) beside it")
    p.add_argument("--dicom-form", choices=("classic", "enhanced", "per-phase"),
                   help="implies --dicom: classic (default; one series, a file per slice and phase), enhanced (one "
                        "Legacy Converted Enhanced MR object) or per-phase (one series per phase)")
    p.set_defaults(func=cmd_synth)


def _add_demo_command(sub: argparse._SubParsersAction) -> None:
    """`imnrisk demo` and its options."""
    p = sub.add_parser("demo", help="the whole pipeline on the built-in phantom cohort")
    p.add_argument("--out", default="imnrisk-demo", help="output folder (default: imnrisk-demo)")
    p.add_argument("--cv-repeats", type=int, default=100, help="repeats of 5-fold CV (default 100, as the paper)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--protocol", choices=("both", "imnrisk", "paper"), default="both",
                   help="train IMNRisk's and the paper's protocol side by side (default), or only one "
                        "(about halves the training time)")
    _add_synth_options(p)
    p.set_defaults(func=cmd_demo)


def _add_icc_options(p: argparse.ArgumentParser) -> None:
    """Feature stability: the second reader's table and the ICC(2,1) threshold of `train`."""
    p.add_argument("--features2", help="the second reader's features (default: features_reader2.csv beside "
                                       "--features, when there)")
    icc = p.add_mutually_exclusive_group()
    icc.add_argument("--icc-threshold", type=float, help="drop features with ICC(2,1) below this before any other "
                                                         "selection step (default 0.75 when a second reading exists)")
    icc.add_argument("--no-icc", action="store_true", help="no ICC filter, even with a second reader's table")


def _add_synth_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patients", type=int, default=124, help="number of patients (default 124, as the paper)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    _add_run_options(p)


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; turn every user error into exit 2 with one line per problem."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _stop_cleanly_on_sigterm()
    try:
        check_argument_text(args, argument_names(parser, args.command))
        if hasattr(args, "jobs"):
            from IMNRiskLib.core.workers import resolve_jobs  # start-up time: only this command loads it
            args.jobs = resolve_jobs(args.jobs)
        return args.func(args)
    except InputErrors as exc:
        report_errors(exc.errors)
        return EXIT_INPUT
    except InputError as exc:
        report_errors([exc])
        return EXIT_INPUT
    except OSError as exc:
        from IMNRiskLib.core.files import USER_FIXABLE_ERRNOS  # start-up time: only this command loads it
        if exc.errno not in USER_FIXABLE_ERRNOS or os.environ.get("IMNRISK_DEBUG"):
            return _internal_error(exc)
        report_errors([InputError(f"cannot write or read ({exc.strerror}); nothing was half-written",
                                  file=exc.filename)])
        return EXIT_INPUT
    except KeyboardInterrupt:
        say("imnrisk: interrupted; no output was half-written (extraction keeps finished cases in its cache)")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for users
        return _internal_error(exc)
    finally:
        from IMNRiskLib.core.progress import STOP  # start-up time: only this command loads it
        STOP.clear()
        if previous is not None:
            import signal  # start-up time: signal loads only when used
            for sig, handler in previous.items():
                if handler is not None:  # None: installed from C, cannot be put back from Python
                    signal.signal(sig, handler)


def _stop_cleanly_on_sigterm():
    """SIGTERM (e.g. Slicer's Cancel) stops a run like Ctrl-C: staged outputs removed, workers ended.
    Both also set progress.STOP, checked by long loops and before outputs are committed, in case the
    KeyboardInterrupt gets lost. Returns the previous handlers (restored when main returns)."""
    import signal  # start-up time: signal loads only when used
    import threading  # start-up time: threading loads only when used
    from IMNRiskLib.core.progress import STOP  # start-up time: only this command loads it

    def interrupt(signum, frame):
        STOP.set()
        raise KeyboardInterrupt
    STOP.clear()
    if threading.current_thread() is threading.main_thread():
        return {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    return None


def forget_caught_interrupt() -> None:
    """Let `python -m IMNRiskLib` exit with main's code after a stop it caught (130, not killed by SIGINT).

    CPython 3.8-3.13 sets a flag when a KeyboardInterrupt ends code run from a string (`exec`,
    as numba and dataclasses build functions) and, under `-m` only, kills itself with SIGINT at
    exit when the flag is set, even if the interrupt was caught: one SIGTERM in ten came out as -2.
    Every string evaluation clears the flag first, so evaluating one clears it."""
    exec("None")  # noqa: S102 - a constant string: the only way to clear the interpreter's flag


def _internal_error(exc: BaseException) -> int:
    """A bug of ours: one line (a traceback with IMNRISK_DEBUG=1), exit 1."""
    if os.environ.get("IMNRISK_DEBUG"):
        raise exc
    say(f"imnrisk: internal error: {type(exc).__name__}: {exc} (IMNRISK_DEBUG=1 shows a traceback)")
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
