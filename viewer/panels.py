"""Page panels that show plain data: the cohort worklist and sanity-check results (a map's localisation scores
are written by the viewer beside the map they score).

They take dicts and lists (never models or tensors) and return what the user picked;
app.py decides what to compute. User text is escaped (viewer.text.plain).
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from viewer.text import plain


def worklist_panel(rows: list[dict], ids: list[str], columns: tuple[str, ...], numeric: tuple[str, ...]) -> str | None:
    """The run's table, sortable by any column, and the id of the row to open (or None).

    Clicking a row in the table opens it; so does the 'Open' list below it (same state). Rows
    are picked by id, so re-sorting never changes what is open.
    """
    key = "worklist_open"

    def picked_in_table() -> None:
        selection = st.session_state.get("worklist_table")
        chosen = getattr(getattr(selection, "selection", None), "rows", None) or []
        if chosen and chosen[0] < len(ids):
            st.session_state[key] = ids[chosen[0]]

    shown = [{c: row.get(c) for c in columns} for row in rows]
    st.dataframe(
        shown, hide_index=True, on_select=picked_in_table, selection_mode="single-row", key="worklist_table",
        column_config={c: st.column_config.NumberColumn(c, format="%.3g") for c in numeric if c in columns},
    )  # fmt: skip
    if st.session_state.get(key) not in ids:
        st.session_state.pop(key, None)
    by_id = dict(zip(ids, rows))

    def label(row_id: str) -> str:
        r = by_id[row_id]
        return f"{r.get('case')} · {r.get('method')} · {r.get('layer')} · {r.get('target_name') or '-'} ({r.get('status')})"

    return st.selectbox(
        "Open", ids, format_func=label, index=None, key=key, placeholder="Pick a case (or click its row)"
    )


def sanity_figure(report: dict) -> go.Figure:
    """Spearman and SSIM against the original map, one point per randomised block (top first)."""
    blocks = [s["block"] for s in report["steps"]]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=blocks, y=[s["spearman"] for s in report["steps"]], mode="lines+markers",
                             name="Spearman (|raw map|)"))  # fmt: skip
    fig.add_trace(go.Scatter(x=blocks, y=[s["signed_spearman"] for s in report["steps"]], mode="lines+markers",
                             name="Spearman (signed)", line_dash="dash"))  # fmt: skip
    fig.add_trace(go.Scatter(x=blocks, y=[s["ssim"] for s in report["steps"]], mode="lines+markers", name="SSIM"))
    fig.add_hline(y=0.3, line_dash="dot", annotation_text="0.3", line_color="#888")
    fig.update_layout(
        height=300, margin=dict(l=0, r=0, t=30, b=0), yaxis=dict(range=[-1.05, 1.05], title="similarity to original"),
        xaxis=dict(title="cumulatively randomised, top block first"), legend=dict(orientation="h", y=1.15),
    )  # fmt: skip
    return fig


def sanity_panel(report: dict, title: str, untrained: list[str] = ()) -> None:
    """The verdict in whole sentences, which map it tested, and why SSIM and rank correlation can disagree."""
    from explain.trust.sanity import SSIM_VS_RANKS

    st.caption(plain(f"Tested: {title}. From the top block down, each block's weights were replaced by random ones "
                     "and the map recomputed."))  # fmt: skip
    (st.success if report["depends_on_weights"] and not untrained else st.warning)(plain(report["verdict"]))
    for sentence in untrained:
        st.warning(plain(sentence))
    st.plotly_chart(sanity_figure(report), key="sanity_chart")
    st.caption(SSIM_VS_RANKS)
