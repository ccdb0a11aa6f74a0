// The 3D pane: a WebGL2 ray-caster showing the map inside a translucent anatomy, linked to the crosshair.
//
// Loaded and built only when its pane is first shown. The anatomy is reduced in the browser to at most
// 128 voxels a side (nothing is fetched for it); the map is uploaded at its own grid and sampled through
// its own affine with the GPU's trilinear filtering. The image is drawn on demand (view, window, overlay
// or threshold changes), never per slice step: the crosshair is a marker on a 2D canvas above the render,
// projected with the same camera, so moving it costs microseconds.

import { el } from "./pane.js";
import { invert4, multiply4 } from "./geometry.js";
import { VERTEX_SHADER, FRAGMENT_SHADER, compileProgram } from "./shaders3d.js";
import { Camera } from "./camera3d.js";

const MAX_SIDE = 128;
// Ray casting runs on the CPU under a software GPU (SwiftShader) and on weak laptops: the 3D image is drawn at
// most this many pixels on its long side and scaled up by the browser; smaller while the user rotates it.
const RENDER_SIDE = { full: 320, interactive: 160 };
const STEPS_PER_VOXEL = { full: 0.9, interactive: 0.5 };

/** Reduce a volume to at most MAX_SIDE voxels a side (mean of 2x2x2 at each strided position). */
export function reduceVolume(data, dims, scale, inter) {
  const step = Math.max(1, Math.ceil(Math.max(...dims) / MAX_SIDE));
  const out = dims.map((n) => Math.max(1, Math.floor(n / step)));
  const values = new Float32Array(out[0] * out[1] * out[2]);
  const [n0, n1, n2] = dims;
  const s1 = n0;
  const s2 = n0 * n1;
  const d = step > 1 ? 1 : 0;
  for (let k = 0, p = 0; k < out[2]; k++) {
    const z = Math.min(k * step, n2 - 1 - (n2 > 1 ? d : 0));
    const dz = n2 > 1 ? d * s2 : 0;
    for (let j = 0; j < out[1]; j++) {
      const y = Math.min(j * step, n1 - 1 - d);
      for (let i = 0; i < out[0]; i++, p++) {
        const x = Math.min(i * step, n0 - 1 - d);
        const a = x + s1 * y + s2 * z;
        const sum = data[a] + data[a + d] + data[a + d * s1] + data[a + d + d * s1] + data[a + dz] + data[a + d + dz] + data[a + d * s1 + dz] + data[a + d + d * s1 + dz];
        values[p] = (sum / 8) * scale + inter;
      }
    }
  }
  // Voxel (i, j, k) of the reduced grid sits at (i * step + d / 2, ...) of the original.
  const toOriginal = [
    [step, 0, 0, d / 2],
    [0, step, 0, d / 2],
    [0, 0, n2 > 1 ? step : 1, n2 > 1 ? d / 2 : 0],
    [0, 0, 0, 1],
  ];
  return { values, dims: out, toOriginal };
}

export class Render3D {
  constructor(container, viewer) {
    this.viewer = viewer;
    this.container = container;
    el("div", { class: "cv-pane-head", text: "3D · drag to rotate, wheel to zoom" }, container).classList.add("cv-pane-title");
    this.canvas = el("canvas", { "data-testid": "cv-canvas-3d" }, container);
    this.marks = el("canvas", { class: "cv-marks" }, container);
    this.gl = this.canvas.getContext("webgl2", { antialias: false, preserveDrawingBuffer: false });
    if (!this.gl) {
      container.append("WebGL2 is not available in this browser: no 3D view.");
      return;
    }
    this.program = compileProgram(this.gl, VERTEX_SHADER, FRAGMENT_SHADER);
    this.camera = new Camera();
    this.textures = {};
    this.bindPointer();
    this.container.setAttribute("data-ready", "0");
  }

  resize(width, height) {
    this.width = width;
    this.height = height;
    for (const c of [this.canvas, this.marks]) {
      c.style.width = `${width}px`;
      c.style.height = `${height}px`;
    }
    this.marks.width = width;
    this.marks.height = height;
    this.marks.style.top = `${this.canvas.offsetTop}px`;
    this.update();
  }

  /** Something the render depends on changed: draw once, at the next frame (coarser while interacting). */
  update(quality = "full") {
    if (!this.gl) return;
    this.quality = this.queued && this.quality === "interactive" ? "interactive" : quality;
    clearTimeout(this.refine);
    if (quality === "interactive") this.refine = setTimeout(() => this.update("full"), 250);
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      this.drawNow(this.quality);
    });
  }

  dispose() {
    this.gl?.getExtension("WEBGL_lose_context")?.loseContext();
  }

  crosshairMoved() {
    this.drawMarks();
  }

  // ------------------------------------------------------------------ data to textures
  syncTextures() {
    const v = this.viewer;
    const gl = this.gl;
    const anatomy = v.anatomy;
    if (!anatomy?.data || v.root.getAttribute("data-ready") !== "1") return false;
    if (this.anatomyFor !== anatomy.data) {
      this.reduced = reduceVolume(anatomy.data, v.geom.dims, anatomy.scale, anatomy.inter);
      this.anatomyFor = anatomy.data;
      this.windowFor = null;
      this.camera.fit(v.geom);
    }
    if (this.windowFor !== `${v.s.width}|${v.s.level}`) {
      const { values, dims } = this.reduced;
      const bytes = new Uint8Array(values.length);
      const lo = v.s.level - v.s.width / 2;
      const k = 255 / v.s.width;
      for (let p = 0; p < values.length; p++) bytes[p] = Math.max(0, Math.min(255, (values[p] - lo) * k));
      this.textures.anatomy = upload3d(gl, this.textures.anatomy, bytes, dims);
      this.windowFor = `${v.s.width}|${v.s.level}`;
    }
    const map = v.s.overlay ? v.slots[v.s.mapIndex]?.shown : null;
    if (map && this.mapFor !== map.data) {
      this.textures.map = upload3d(gl, this.textures.map, map.data, map.dims);
      this.mapFor = map.data;
    }
    this.map = map;
    const lut = v.colourmaps?.[v.s.colourmap];
    if (lut && this.lutFor !== lut) {
      const rgba = new Uint8Array(256 * 4);
      for (let q = 0; q < 256; q++) rgba.set([lut[3 * q], lut[3 * q + 1], lut[3 * q + 2], 255], 4 * q);
      this.textures.lut = this.textures.lut || gl.createTexture();
      gl.bindTexture(gl.TEXTURE_2D, this.textures.lut);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, 256, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, rgba);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
      this.lutFor = lut;
    }
    return Boolean(this.textures.lut);
  }

  // ------------------------------------------------------------------ drawing
  drawNow(quality = "full") {
    const gl = this.gl;
    if (!gl || !this.width || !this.syncTextures()) return;
    const v = this.viewer;
    const scale = Math.min(1, RENDER_SIDE[quality] / Math.max(this.width, this.height));
    const [w, h] = [Math.max(1, Math.round(this.width * scale)), Math.max(1, Math.round(this.height * scale))];
    if (this.canvas.width !== w || this.canvas.height !== h) [this.canvas.width, this.canvas.height] = [w, h];
    gl.viewport(0, 0, w, h);
    gl.clearColor(0, 0, 0, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.useProgram(this.program);
    const u = (name) => gl.getUniformLocation(this.program, name);
    const voxelToWorld = multiply4(v.geom.affine, this.reduced.toOriginal);
    const { worldToClipInverse, eye } = this.camera.matrices(this.width / this.height);
    gl.uniformMatrix4fv(u("clipToWorld"), false, worldToClipInverse);
    gl.uniform3fv(u("eye"), eye);
    gl.uniformMatrix4fv(u("worldToAnatomy"), false, columnMajor(invert4(voxelToWorld)));
    gl.uniform3fv(u("anatomyDims"), this.reduced.dims);
    gl.uniform1i(u("steps"), Math.ceil(Math.hypot(...this.reduced.dims) * STEPS_PER_VOXEL[quality]));
    const showMap = Boolean(this.map);
    gl.uniform1i(u("showMap"), showMap ? 1 : 0);
    if (showMap) {
      gl.uniformMatrix4fv(u("worldToMap"), false, columnMajor(this.map.inverse));
      gl.uniform3fv(u("mapDims"), this.map.dims);
      gl.uniform1f(u("threshold"), Math.max(1 / 255, v.s.threshold));
      gl.uniform1f(u("opacity"), v.s.opacity);
    }
    bind(gl, 0, gl.TEXTURE_3D, this.textures.anatomy, u("anatomy"));
    bind(gl, 1, gl.TEXTURE_3D, showMap ? this.textures.map : this.textures.anatomy, u("mapTex"));
    bind(gl, 2, gl.TEXTURE_2D, this.textures.lut, u("lut"));
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    this.drawMarks();
    this.container.setAttribute("data-ready", "1");
  }

  /** Crosshair marker and orientation letters, projected with the camera. */
  drawMarks() {
    const v = this.viewer;
    if (!this.width || !v.geom) return;
    const ctx = this.marks.getContext("2d");
    ctx.clearRect(0, 0, this.width, this.height);
    const world = v.geom.affine.slice(0, 3).map((row) => row[0] * v.cross[0] + row[1] * v.cross[1] + row[2] * v.cross[2] + row[3]);
    const project = (p) => this.camera.project(p, this.width, this.height);
    const arm = this.camera.radius * 0.12;
    ctx.lineWidth = 1.5;
    [
      [[arm, 0, 0], "#ff6b6b"],
      [[0, arm, 0], "#6bff8f"],
      [[0, 0, arm], "#6bb5ff"],
    ].forEach(([d, colour]) => {
      const a = project(world.map((x, n) => x - d[n]));
      const b = project(world.map((x, n) => x + d[n]));
      ctx.strokeStyle = colour;
      ctx.beginPath();
      ctx.moveTo(...a);
      ctx.lineTo(...b);
      ctx.stroke();
    });
    const [cx, cy] = project(world);
    ctx.strokeStyle = "#50c8ff";
    ctx.beginPath();
    ctx.arc(cx, cy, 5, 0, 2 * Math.PI);
    ctx.stroke();
    this.marks.setAttribute("data-crosshair", `${cx.toFixed(1)},${cy.toFixed(1)}`);
    ctx.fillStyle = "#ffd24a";
    ctx.font = "bold 13px system-ui, sans-serif";
    const centre = this.camera.target;
    for (const [d, letter] of [[[1, 0, 0], "R"], [[0, 1, 0], "A"], [[0, 0, 1], "S"]]) {
      const [x, y] = project(centre.map((c, n) => c + d[n] * this.camera.radius * 0.55));
      ctx.fillText(letter, x - 4, y + 4);
    }
  }

  bindPointer() {
    let drag = null;
    this.canvas.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY };
      this.canvas.setPointerCapture(e.pointerId);
      this.viewer.root.focus({ preventScroll: true });
    });
    this.canvas.addEventListener("pointermove", (e) => {
      if (!drag) return;
      this.camera.rotate((e.clientX - drag.x) * 0.01, (e.clientY - drag.y) * 0.01);
      drag = { x: e.clientX, y: e.clientY };
      this.update("interactive");
    });
    this.canvas.addEventListener("pointerup", () => (drag = null));
    this.canvas.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        this.camera.zoom(Math.exp(e.deltaY * 0.002));
        this.update("interactive");
      },
      { passive: false },
    );
    this.canvas.addEventListener("dblclick", () => this.viewer.toggleMaximise("3d"));
  }
}

function upload3d(gl, texture, bytes, dims) {
  const tex = texture || gl.createTexture();
  gl.bindTexture(gl.TEXTURE_3D, tex);
  gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
  gl.texImage3D(gl.TEXTURE_3D, 0, gl.R8, dims[0], dims[1], dims[2], 0, gl.RED, gl.UNSIGNED_BYTE, bytes);
  for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_3D, p, gl.LINEAR);
  for (const p of [gl.TEXTURE_WRAP_S, gl.TEXTURE_WRAP_T, gl.TEXTURE_WRAP_R]) gl.texParameteri(gl.TEXTURE_3D, p, gl.CLAMP_TO_EDGE);
  return tex;
}

function bind(gl, unit, target, texture, location) {
  gl.activeTexture(gl.TEXTURE0 + unit);
  gl.bindTexture(target, texture);
  gl.uniform1i(location, unit);
}

/** Rows -> the column-major Float32Array WebGL expects. */
export function columnMajor(m) {
  const out = new Float32Array(16);
  for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) out[c * 4 + r] = m[r][c];
  return out;
}
