"""`imnrisk synth` and `imnrisk demo`: the phantom cohort, then synth -> extract -> tables -> train on it
(both protocols), with one summary line at the end."""

from __future__ import annotations

import argparse
import contextlib
import threading
from pathlib import Path
from typing import Callable, List

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.app.summaries import (EXIT_INTERNAL, EXIT_OK, demo_closing_line, print_training_summary,
                                      protocols_side_by_side, report_errors, say)


def _progress_bar(desc: str, quiet: bool):
    """A tqdm bar on stderr with ETA, and a callback that advances it to `done`."""
    from IMNRiskLib.core.progress import progress_bar  # start-up time: only this command loads it
    bar = progress_bar(0, desc, "case", enabled=not quiet)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
    return bar, update


def _synthesize(folder: Path, args: argparse.Namespace) -> dict:
    from IMNRiskLib.app import synth  # start-up time: only this command loads it
    form = getattr(args, "dicom_form", None)
    options = synth.SynthOptions(patients=args.patients, seed=args.seed, full_size=getattr(args, "full_size", False),
                                 dicom=getattr(args, "dicom", False) or form is not None, jobs=args.jobs,
                                 dicom_form=form or "classic")
    if options.patients < 2:
        raise InputError("--patients must be 2 or more", field="--patients")
    if options.dicom:
        from IMNRiskLib.app.synthdicom import check_form  # start-up time: only this command loads it
        check_form(options.dicom_form)
    bar, update = _progress_bar("synth", args.quiet)
    try:
        return synth.synthesize(folder, options, progress=update)
    finally:
        bar.close()


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic phantom cohort with a known truth."""
    from IMNRiskLib.core.files import safe_outputs  # start-up time: only this command loads it
    folder = Path(args.dir)
    safe_outputs([folder / "cohort.csv", folder / "truth.json"], [], args.force, folder=folder, user_folder=True)
    summary = _synthesize(folder, args)
    for note in summary.get("notes", []):
        say(f"imnrisk synth: note: {note}")
    say(f"imnrisk synth: {summary['patients']} synthetic patients ({summary['events']} IMN-positive) -> "
        f"{folder / 'cohort.csv'}; truth in {folder / 'truth.json'}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """synth -> extract -> tables -> train on the built-in phantom, with one summary at the end."""
    from IMNRiskLib.core.files import safe_outputs  # start-up time: only this command loads it
    folder = Path(args.out)
    outputs = safe_outputs([folder / "features.csv"], [], args.force, folder=folder, user_folder=True)
    with outputs.locked():  # one run per folder
        return _demo(folder, args)


def _demo(folder: Path, args: argparse.Namespace) -> int:
    """The demo's steps, in a folder this run holds the lock of."""
    import time  # start-up time: time loads only when used
    from IMNRiskLib.radiomics import features  # start-up time: only this command loads it
    from IMNRiskLib.outputs.tables import write_tables  # start-up time: only this command loads it
    from IMNRiskLib.inputs.cohort import read_cohort  # start-up time: only this command loads it
    start = time.perf_counter()
    summary = _synthesize(folder / "phantom", args)
    say(f"imnrisk demo: synthesised {summary['patients']} patients ({summary['events']} IMN-positive)")
    cohort = read_cohort(folder / "phantom" / "cohort.csv", need_clinical=True, need_outcome=True)
    # Table 1 and 2 need the manifest only: made while the extraction starts (its input hashing
    # takes one core) instead of between the extraction and the training, on one core
    tables = meanwhile(lambda: write_tables(folder / "phantom" / "cohort.csv", folder / "tables", force=True),
                       "imnrisk-tables")
    try:
        run = features.extract_cohort(cohort, features.load_settings(), folder / ".imnrisk-cache", jobs=args.jobs,
                                      show_bar=not args.quiet)
    except BaseException:
        _settled(tables)  # stopped or failed: the tables are written (or not) before the demo ends
        raise
    paths = features.write_run(run, folder / "features.csv")
    if run.failures:
        _settled(tables)
        report_errors([InputError(f["reason"], file=f["file"], id=f["ID"], field=f["field"] or None)
                       for f in run.failures])
        return EXIT_INTERNAL  # the phantom must extract cleanly
    say(f"imnrisk demo: {len(run.features)} cases x {run.features.shape[1]} features -> {paths['features']}"
        + (f"; second reader (Mask2): {len(run.reader2.features)} cases -> {paths['reader2']}" if run.reader2 else ""))
    tables()
    metrics, report = _demo_train(folder, paths["features"], args)
    say(demo_closing_line(metrics, time.perf_counter() - start, report))
    return EXIT_OK


def meanwhile(work: Callable[[], object], name: str) -> Callable[[], None]:
    """Run `work` in a background thread; returns the function that waits for it and raises its
    error. For steps that need one core while the rest of the demo keeps the others busy (or waits
    on one core itself). A daemon thread, so that nothing but the demo's own clean-up
    (`_settled`) waits for it."""
    from concurrent.futures import Future  # start-up time: only this command loads it
    outcome: Future = Future()

    def run() -> None:
        try:
            work()
            outcome.set_result(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.set_exception(exc)
    threading.Thread(target=run, name=name, daemon=True).start()
    return outcome.result


def render_meanwhile(stage: Path) -> Callable[[], None]:
    """Render `stage`'s report in a background thread (`meanwhile`): the training's work runs in
    worker processes, so the thread mostly shares the main process with a loop that waits for them."""
    from IMNRiskLib.outputs.report import render  # start-up time: only this command loads it
    return meanwhile(lambda: render(stage), "imnrisk-report")


def _settled(wait: Callable[[], None]) -> None:
    """Wait for a background report, its error ignored: the demo has failed or been stopped (its
    staging folder is deleted next), or the error was raised already."""
    with contextlib.suppress(Exception):
        wait()


def demo_bootstrap(protocol: str, bootstrap: int) -> int:
    """The demo validates the paper's protocol by its nested and leaky CV only (what the side-by-side
    comparison shows: nested AUC and slope, leaky AUC): its bootstrap would double the demo's time
    (issue 13, option a). IMNRisk's protocol keeps the full validation."""
    return 0 if protocol == "paper" else bootstrap


def _demo_train(folder: Path, features_csv: Path, args: argparse.Namespace):
    """Train the demo's protocols on the same phantom: the paper's into model-paper/, IMNRisk's
    into model/ (last, so its report shows both side by side, protocols.json). The paper's report
    is drawn while IMNRisk's protocol trains (issue 31: a core idles while a report renders).
    Returns the default's (or the only) metrics and report path."""
    from IMNRiskLib.core.files import output_set, write_json  # start-up time: only this command loads it
    # start-up time: only this command loads it
    from IMNRiskLib.modelling.protocols import PROTOCOLS, comparison_summary, training_options, use_icc
    from IMNRiskLib.outputs.report import render  # start-up time: only this command loads it
    from IMNRiskLib.app.training import train  # start-up time: only this command loads it
    import time  # start-up time: time loads only when used
    names = [p for p in ("paper", "imnrisk") if args.protocol in (p, "both")]
    compared = {}
    with contextlib.ExitStack() as model_folders:  # each complete, or absent: committed together at the end
        waits: List[Callable[[], None]] = []
        for name in names:
            start = time.perf_counter()
            target = folder / ("model" if name == "imnrisk" else f"model-{name}")
            stage = model_folders.enter_context(output_set(target, last="model.json"))
            metrics = train(folder / "phantom" / "cohort.csv", features_csv, stage,
                            options=training_options(name, seed=args.seed), cv_folds=5, cv_repeats=args.cv_repeats,
                            bootstrap=demo_bootstrap(name, args.bootstrap), jobs=args.jobs, show_bar=not args.quiet,
                            use_icc=use_icc(name, getattr(args, "icc_threshold", None), getattr(args, "no_icc", False)))
            compared[name] = comparison_summary(metrics)
            if len(compared) > 1:
                write_json(stage / "protocols.json", {"protocols": [compared[p] for p in PROTOCOLS if p in compared]})
            report = target / "report.html"
            if name != names[-1]:
                waits.append(render_meanwhile(stage))  # the next protocol trains on the cores meanwhile
                model_folders.callback(_settled, waits[-1])  # stopped early: the drawing ends before its folder goes
            else:
                for wait in waits:
                    wait()  # the earlier report finished (or its error raised): one drawing thread at a time
                render(stage, args.jobs)  # the validation's warm workers draw half the figures
            print_training_summary(metrics, target)
            say(f"imnrisk demo: {name} protocol trained and validated in {time.perf_counter() - start:.0f} s")
    if len(compared) > 1:
        say(protocols_side_by_side(compared))
    return metrics, report
