// PNG export in the browser of what the user sees: the visible panes with their zoom, pan, orientation,
// colour map, threshold, opacity, crosshair, letters and scale bars, the 3D pane if shown, and the colour bar.

import { drawColourbar } from "./legend.js";

const SCALE = 2; // export at twice the on-screen size: crisper text, same content

function box(node, origin) {
  const r = node.getBoundingClientRect();
  return { x: r.left - origin.left, y: r.top - origin.top, w: r.width, h: r.height };
}

function drawPane(ctx, pane, origin, crosshair) {
  const b = box(pane.stage, origin);
  ctx.save();
  ctx.beginPath();
  ctx.rect(b.x, b.y, b.w, b.h);
  ctx.clip();
  ctx.fillStyle = "#000";
  ctx.fillRect(b.x, b.y, b.w, b.h);
  const t = pane.transform();
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(pane.canvas, b.x + t.tx, b.y + t.ty, pane.canvas.width * t.sx, pane.canvas.height * t.sy);
  if (crosshair && pane.cross) {
    const [sx, sy] = pane.toStage(...pane.cross);
    ctx.strokeStyle = "rgba(80, 200, 255, 0.75)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(b.x + Math.round(sx) + 0.5, b.y);
    ctx.lineTo(b.x + Math.round(sx) + 0.5, b.y + b.h);
    ctx.moveTo(b.x, b.y + Math.round(sy) + 0.5);
    ctx.lineTo(b.x + b.w, b.y + Math.round(sy) + 0.5);
    ctx.stroke();
  }
  ctx.font = "bold 14px system-ui, sans-serif";
  ctx.fillStyle = "#ffd24a";
  ctx.textBaseline = "middle";
  const labels = pane.layout.labels;
  ctx.textAlign = "left";
  ctx.fillText(labels.left, b.x + 4, b.y + b.h / 2);
  ctx.textAlign = "right";
  ctx.fillText(labels.right, b.x + b.w - 4, b.y + b.h / 2);
  ctx.textAlign = "center";
  ctx.fillText(labels.top, b.x + b.w / 2, b.y + 10);
  ctx.fillText(labels.bottom, b.x + b.w / 2, b.y + b.h - 10);
  const bar = box(pane.bar, origin);
  ctx.fillStyle = "#fff";
  ctx.fillRect(bar.x, bar.y, bar.w, Math.max(2, bar.h));
  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "left";
  ctx.fillText(pane.barText.textContent, bar.x, bar.y - 8);
  ctx.restore();
  ctx.fillStyle = "#e8e8e8";
  ctx.font = "600 13px system-ui, sans-serif";
  ctx.textAlign = "left";
  ctx.textBaseline = "bottom";
  ctx.fillText(`${pane.titleEl.textContent}  ${pane.sliceEl.textContent}`, b.x, b.y - 3);
}

/** Build the PNG (a Blob) of the viewer as shown. */
export async function renderPng(viewer) {
  const origin = viewer.root.getBoundingClientRect();
  const panes = viewer.allPanes().filter((pane) => pane.root.offsetParent !== null);
  const bottom = Math.max(...panes.map((p) => box(p.root, origin)).map((b) => b.y + b.h), 0);
  const height = Math.ceil(bottom + 56);
  const canvas = document.createElement("canvas");
  canvas.width = Math.ceil(origin.width * SCALE);
  canvas.height = height * SCALE;
  const ctx = canvas.getContext("2d");
  ctx.scale(SCALE, SCALE);
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, origin.width, height);
  for (const pane of panes) drawPane(ctx, pane, origin, viewer.s.crosshair);
  if (viewer.render3d && !viewer.view3d.hidden) {
    const b = box(viewer.render3d.canvas, origin);
    viewer.render3d.drawNow(); // WebGL: draw and copy in the same task (no preserved drawing buffer)
    ctx.drawImage(viewer.render3d.canvas, b.x, b.y, b.w, b.h);
    ctx.drawImage(viewer.render3d.marks, b.x, b.y, b.w, b.h);
  }
  const y = bottom + 12;
  if (viewer.colourmaps) drawColourbar(ctx, viewer.colourmaps[viewer.s.colourmap], viewer.s.threshold, 8, y, 256, 12);
  ctx.fillStyle = "#e8e8e8";
  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  ctx.fillText(viewer.legendEl.textContent, 8, y + 18);
  ctx.fillText(`window ${viewer.s.width.toPrecision(4)} / level ${viewer.s.level.toPrecision(4)} · ${viewer.s.radiological ? "radiological" : "neurological"}`, 280, y);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

/** Save the PNG through the browser's download. */
export async function exportPng(viewer) {
  const blob = await renderPng(viewer);
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  const title = (viewer.slots[viewer.s.mapIndex]?.shown?.title || "image").replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80);
  link.href = url;
  link.download = `camviewer_${title}.png`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
