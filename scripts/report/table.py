"""gpu_report's figures as the table it prints."""
from __future__ import annotations

from report import user_view


def table(r: dict) -> str:
    rows = [("peak bf16 matmul", f"{r.get('peak_bf16_flops', float('nan')) / 1e12:.0f} TFLOP/s", "")]
    variants = [("esm2", 0.70), ("esm2_unfused", 0.70), ("esm2_compiled", 0.70), ("esm2_layer_fused", 0.78), ("dnabert", 0.45),
                ("dnabert_unfused", 0.45)]
    variants += [(k, 0.45) for k in r if k.startswith("dnabert_flex") and not k.endswith("_kernels")]
    for s, target in variants:
        if s in r and "mfu" in r[s]:
            d = r[s]
            rows.append((f"{s} alone", f"{d['tokens_per_second']:.0f} tok/s, {d['items_per_second']:.0f} ORFs/s, "
                         f"MFU {d['mfu']:.1%}, util {d['gpu_util_percent']:.0f}%", f"MFU >= {target:.0%}"))
    for k in ("e2e_genome", "e2e_reads"):
        if k in r:
            d = r[k]
            frac = f", {d['fraction_of_esm_alone']:.0%} of ESM alone" if "fraction_of_esm_alone" in d else ""
            rows.append((f"e2e {d['label']}", f"{d['orfs_per_second']:.0f} ORFs/s{frac}, util "
                         f"{d['gpu_util_embedding_percent']:.0f}%", ">= 85% of ESM alone, util >= 95%"))
    if "reference" in r:
        ref = r["reference"]
        first = f" (first run after a one-size warm-up: {ref['speedup_first_run']:.1f}x)" if "speedup_first_run" in ref else ""
        rows.append(("speedup vs reference", f"{ref['speedup']:.1f}x{first}", ">= 15x"))
    if "agreement" in r:
        a = r["agreement"]
        rows.append(("bf16 vs fp32", f"min cos DNABERT {a['dnabert']['min_cosine']:.5f}, ESM {a['esm2']['min_cosine']:.5f}; "
                     f"verdicts {a['chunk_verdict_agreement']:.2%}", "cos >= 0.999, verdicts >= 99.9%"))
        if "orfs_not_bit_identical_when_repeated" in a["dnabert"]:
            rows.append(("same batch twice", ", ".join(
                f"{m}: {a[m]['orfs_not_bit_identical_when_repeated']} of {a[m]['orfs']} ORFs differ "
                f"(max {a[m]['max_abs_diff_when_repeated']:.2g})" for m in ("dnabert", "esm2")), "0 for --resume"))
    if "resume" in r:
        d = r["resume"]
        got = (f"failed, return codes {d['return_codes']}" if "error" in d else
               f"{d['reused_ranges']} of {d['ranges']} ranges reused; differing: {d['files_differing'] or 'none'}, "
               f"{d['feature_rows_differing']} feature rows")
        rows.append(("resume after SIGKILL", got, "byte-identical"))
    if "layouts" in r:
        d = r["layouts"]
        rows.append(("the same bytes in 3 layouts", f"{'yes' if d['identical'] else 'NO'} ({d['orfs']} ORFs; "
                     f"{', '.join(d['sha256'])}{'; errors: ' + ', '.join(d['errors']) if d['errors'] else ''})",
                     "identical"))
    rows += user_view.rows(r.get("user", {}))
    w = max(len(a) for a, _, _ in rows)
    return "\n".join(f"{a:<{w}}  {b}  [{c}]" for a, b, c in rows)
