// An orbiting camera for the 3D pane: it turns around the centre of the image, superior up.
// Matrices are kept as rows ([[...], ...]); render3d.js converts them for WebGL.

import { apply4, invert4, multiply4 } from "./geometry.js";

const FOV = (30 * Math.PI) / 180;

function lookAt(eye, target, up) {
  const sub = (a, b) => a.map((x, n) => x - b[n]);
  const norm = (a) => a.map((x) => x / Math.hypot(...a));
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const f = norm(sub(target, eye));
  const s = norm(cross(f, up));
  const u = cross(s, f);
  return [
    [...s, -dot(s, eye)],
    [...u, -dot(u, eye)],
    [...f.map((x) => -x), dot(f, eye)],
    [0, 0, 0, 1],
  ];
}

function perspective(aspect, near, far) {
  const f = 1 / Math.tan(FOV / 2);
  return [
    [f / aspect, 0, 0, 0],
    [0, f, 0, 0],
    [0, 0, (far + near) / (near - far), (2 * far * near) / (near - far)],
    [0, 0, -1, 0],
  ];
}

export class Camera {
  constructor() {
    this.azimuth = (-50 * Math.PI) / 180; // from the front and the patient's left, a little above
    this.elevation = (20 * Math.PI) / 180;
    this.distanceScale = 0.8;
    this.target = [0, 0, 0];
    this.radius = 100;
  }

  /** Look at the whole image: its world bounding box. */
  fit(geom) {
    const [n0, n1, n2] = geom.dims;
    const corners = [];
    for (const i of [-0.5, n0 - 0.5]) for (const j of [-0.5, n1 - 0.5]) for (const k of [-0.5, n2 - 0.5]) corners.push(apply4(geom.affine, [i, j, k]));
    const lo = [0, 1, 2].map((a) => Math.min(...corners.map((c) => c[a])));
    const hi = [0, 1, 2].map((a) => Math.max(...corners.map((c) => c[a])));
    this.target = lo.map((x, a) => (x + hi[a]) / 2);
    this.radius = Math.hypot(...hi.map((x, a) => x - lo[a])) / 2;
  }

  rotate(dAzimuth, dElevation) {
    this.azimuth -= dAzimuth;
    this.elevation = Math.max(-1.5, Math.min(1.5, this.elevation + dElevation));
  }

  zoom(factor) {
    this.distanceScale = Math.max(0.3, Math.min(4, this.distanceScale * factor));
  }

  eye() {
    const distance = (this.radius / Math.sin(FOV / 2)) * this.distanceScale;
    const d = [Math.sin(this.azimuth) * Math.cos(this.elevation), Math.cos(this.azimuth) * Math.cos(this.elevation), Math.sin(this.elevation)];
    return this.target.map((t, n) => t + d[n] * distance);
  }

  /** Projection x view (rows) and its inverse as column-major floats for the shader. */
  matrices(aspect) {
    const eye = this.eye();
    const distance = Math.hypot(...eye.map((x, n) => x - this.target[n]));
    const view = lookAt(eye, this.target, [0, 0, 1]);
    const proj = perspective(aspect, Math.max(1e-3, distance - this.radius * 1.5), distance + this.radius * 1.5);
    this.projView = multiply4(proj, view);
    const inverse = invert4(this.projView);
    const worldToClipInverse = new Float32Array(16);
    for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) worldToClipInverse[c * 4 + r] = inverse[r][c];
    this.aspect = aspect;
    return { worldToClipInverse, eye: new Float32Array(eye) };
  }

  /** World point -> canvas pixel (x right, y down). */
  project(p, width, height) {
    if (!this.projView || this.aspect !== width / height) this.matrices(width / height);
    const m = this.projView;
    const clip = [0, 1, 2, 3].map((r) => m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3]);
    return [((clip[0] / clip[3] + 1) / 2) * width, ((1 - clip[1] / clip[3]) / 2) * height];
  }
}
