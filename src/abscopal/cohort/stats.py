"""Cohort statistics from the store's tables: incidence, time to response, association.

- Patient-level abscopal incidence (status "abscopal", CLINICAL.md §8.5) with Wilson 95 %
  intervals, overall and by local therapy, immunotherapy exposure and primary cancer.
- Time from the first local therapy to the first abscopal response (the earliest t1 of the
  lesions carrying the finding) by Kaplan–Meier, censored at the last scan.
- Logistic regression of any out-of-field response on dose class and immunotherapy, with caveats.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

CAVEATS: Final = (
    "Observational, retrospective data: associations are not effects; confounding by indication "
    "(who gets SBRT, who gets immunotherapy) is not adjusted for.",
    "Few events: odds ratios from a handful of responders are unstable, and complete separation "
    "makes them inestimable (reported as such).",
    "Dose class is a coarse summary (BED10 of the prescription, or the Y-90 in-field dose); "
    "out-of-field lesions themselves received ~0 Gy by definition.",
    "Abscopal calls are the software's graded proposals (CLINICAL.md §8.5), not adjudicated "
    "outcomes; a radiologist must confirm each one.",
)
_RX: Final = re.compile(r"^(EBRT|SBRT) ([\d.]+) Gy / (\d+) fx")
HIGH_BED10_GY: Final = 40.0  # BED10 ≥ 40 Gy10 counts as a high-dose course


@dataclass(frozen=True, slots=True, kw_only=True)
class KaplanMeier:
    """Cumulative incidence of abscopal response over days from the local therapy."""

    days: tuple[float, ...]
    cumulative: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    median_days: float | None  # None: the curve never reaches 50 %
    median_days_responders: float | None  # median time among responders
    patients: int
    events: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Logistic:
    """Odds ratios of any out-of-field response, or the reason none could be estimated."""

    table: pd.DataFrame  # term, odds_ratio, ci_low, ci_high, p_value
    patients: int
    events: int
    note: str
    caveats: tuple[str, ...] = CAVEATS


@dataclass(frozen=True, slots=True, kw_only=True)
class CohortStats:
    """Everything the cohort report shows."""

    patients: pd.DataFrame  # one row a processed patient (see `patient_frame`)
    incidence: pd.DataFrame  # group, level, patients, events, proportion, ci_low, ci_high
    km: KaplanMeier
    logistic: Logistic
    failed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def wilson(events: int, total: int) -> tuple[float, float]:
    """Wilson 95 % interval of `events` out of `total`."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(events, total, alpha=0.05, method="wilson")
    return float(low), float(high)


def patient_frame(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per processed patient with the covariates and the time-to-event columns."""
    patients = tables["patients"]
    patients = patients[patients["status"] == "done"].copy()
    columns = [
        "patient_key",
        "patient_id",
        "primary_cancer",
        "local_therapy",
        "immunotherapy",
        "dose_class",
        "abscopal",
        "oof_response",
        "days",
        "event",
    ]
    if patients.empty:
        return pd.DataFrame(columns=columns)
    treatments = tables["treatments"]
    local = treatments[treatments["category"] == "local"]
    systemic = treatments[treatments["category"] == "systemic"]
    t0 = pd.to_datetime(local.groupby("patient_key")["start_date"].min())
    last = pd.to_datetime(tables["studies"].groupby("patient_key")["study_date"].max())
    findings = tables["findings"]
    rows = []
    for p in patients.itertuples():
        key = p.patient_key
        carrying = set(_json_list(p.abscopal_lesions))
        mine = findings[(findings["patient_key"] == key) & findings["lesion_id"].isin(carrying)]
        abscopal = p.abscopal_status == "abscopal"
        start = t0.get(key)
        if abscopal and start is not None and mine["t1"].notna().any():
            days, event = float((pd.to_datetime(mine["t1"]).min() - start).days), True
        else:
            end = last.get(key)
            days = float((end - start).days) if start is not None and end is not None else np.nan
            event = False
        rows.append(
            {
                "patient_key": key,
                "patient_id": p.patient_id,
                "primary_cancer": p.primary_cancer or "unknown",
                "local_therapy": "+".join(
                    sorted(set(local.loc[local["patient_key"] == key, "kind"]))
                )
                or "none",
                "immunotherapy": bool(
                    (systemic.loc[systemic["patient_key"] == key, "kind"] == "immunotherapy").any()
                ),
                "dose_class": _dose_class(key, local, tables["doses"]),
                "abscopal": abscopal,
                "oof_response": bool((p.out_of_field_response_rate or 0.0) > 0.0),
                "days": days,
                "event": event,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def _json_list(value: Any) -> list[Any]:
    import json

    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        loaded = json.loads(value)
        return list(loaded) if isinstance(loaded, list) else []
    return list(value)


def _dose_class(key: str, local: pd.DataFrame, doses: pd.DataFrame) -> str:
    """'high' or 'low': BED10 of an EBRT prescription, or the Y-90 in-field lesion dose."""
    mine = local[local["patient_key"] == key]
    beds = []
    for label in mine["label"]:
        match = _RX.match(str(label))
        if match:
            total, fractions = float(match.group(2)), int(match.group(3))
            beds.append(total * (1.0 + total / fractions / 10.0))
    if beds:
        return "high" if max(beds) >= HIGH_BED10_GY else "low"
    in_field = doses[(doses["patient_key"] == key) & (doses["field"] == "in_field")]
    dose = in_field["dose_mean_gy"].max() if not in_field.empty else np.nan
    if np.isnan(dose):
        return "unknown"
    return "high" if dose >= 100.0 else "low"  # Y-90: ≥ 100 Gy to the treated tumour


def incidence(frame: pd.DataFrame) -> pd.DataFrame:
    """Abscopal incidence with Wilson 95 % intervals, overall and by subgroup."""
    rows = []
    groups = [("overall", pd.Series("all", index=frame.index))]
    groups += [
        (name, frame[name].astype(str))
        for name in ("local_therapy", "immunotherapy", "primary_cancer")
    ]
    for group, levels in groups:
        for level in sorted(set(levels)):
            chosen = frame[levels == level]
            n, events = len(chosen), int(chosen["abscopal"].sum())
            low, high = wilson(events, n) if n else (np.nan, np.nan)
            rows.append(
                {
                    "group": group,
                    "level": level,
                    "patients": n,
                    "events": events,
                    "proportion": events / n if n else np.nan,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows)


def kaplan_meier(frame: pd.DataFrame) -> KaplanMeier:
    """Kaplan–Meier of days to abscopal response, censored at the last scan."""
    from lifelines import KaplanMeierFitter

    usable = frame.dropna(subset=["days"])
    events = int(usable["event"].sum())
    responders = usable.loc[usable["event"], "days"]
    if usable.empty:
        return KaplanMeier(
            days=(),
            cumulative=(),
            lower=(),
            upper=(),
            median_days=None,
            median_days_responders=None,
            patients=0,
            events=0,
        )
    fitter = KaplanMeierFitter()
    fitter.fit(usable["days"], event_observed=usable["event"].astype(bool))
    survival = fitter.survival_function_.iloc[:, 0]
    ci = fitter.confidence_interval_survival_function_
    median = float(fitter.median_survival_time_)
    return KaplanMeier(
        days=tuple(float(d) for d in survival.index),
        cumulative=tuple(float(1.0 - s) for s in survival),
        lower=tuple(float(1.0 - s) for s in ci.iloc[:, 1]),
        upper=tuple(float(1.0 - s) for s in ci.iloc[:, 0]),
        median_days=None if not np.isfinite(median) else median,
        median_days_responders=float(responders.median()) if len(responders) else None,
        patients=len(usable),
        events=events,
    )


def logistic(frame: pd.DataFrame) -> Logistic:
    """Logistic regression of any out-of-field response on dose class and immunotherapy."""
    import statsmodels.api as sm

    data = frame[frame["dose_class"] != "unknown"]
    y = data["oof_response"].astype(float)
    x = pd.DataFrame(
        {
            "dose_class_high": (data["dose_class"] == "high").astype(float),
            "immunotherapy": data["immunotherapy"].astype(float),
        },
        index=data.index,
    )
    empty = pd.DataFrame(columns=["term", "odds_ratio", "ci_low", "ci_high", "p_value"])
    n, events = len(data), int(y.sum())
    constant = [c for c in x.columns if x[c].nunique() < 2]
    x = x.drop(columns=constant)
    if n < 10 or events in (0, n) or x.empty:
        note = f"not estimable: {n} patients, {events} with an out-of-field response"
        if constant:
            note += f"; no variation in {', '.join(constant)}"
        return Logistic(table=empty, patients=n, events=events, note=note)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = sm.Logit(y, sm.add_constant(x)).fit(disp=0, maxiter=200)
        except Exception as exc:  # singular matrix, perfect separation
            return Logistic(table=empty, patients=n, events=events, note=f"not estimable: {exc}")
    trouble = [str(w.message) for w in caught if "separation" in str(w.message).lower()]
    if trouble or not fit.mle_retvals.get("converged", True):
        note = (
            "not estimable: complete or quasi-complete separation ("
            + "; ".join(trouble)[:200]
            + ")"
        )
        return Logistic(table=empty, patients=n, events=events, note=note)
    ci = fit.conf_int()
    table = pd.DataFrame(
        {
            "term": list(fit.params.index),
            "odds_ratio": np.exp(fit.params.to_numpy()),
            "ci_low": np.exp(ci.iloc[:, 0].to_numpy()),
            "ci_high": np.exp(ci.iloc[:, 1].to_numpy()),
            "p_value": fit.pvalues.to_numpy(),
        }
    )
    note = f"{n} patients, {events} with an out-of-field response"
    if constant:
        note += f"; dropped (no variation): {', '.join(constant)}"
    return Logistic(table=table, patients=n, events=events, note=note)


def summarize(tables: dict[str, pd.DataFrame]) -> CohortStats:
    """All cohort statistics from the store's tables (`store.read_tables`)."""
    frame = patient_frame(tables)
    failed = int((tables["patients"]["status"] == "failed").sum())
    return CohortStats(
        patients=frame,
        incidence=incidence(frame),
        km=kaplan_meier(frame),
        logistic=logistic(frame),
        failed=failed,
    )
