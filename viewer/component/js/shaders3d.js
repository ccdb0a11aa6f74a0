// GLSL for the 3D pane: one full-screen quad; each pixel marches its ray through the anatomy (translucent
// grey, composited front to back) and the map, in each volume's own voxel space. The map is shown by its
// maximum along the ray (so the hot end always shows), dimmed by the tissue in front of that maximum.

export const VERTEX_SHADER = `#version 300 es
out vec2 clip;
void main() {
  clip = vec2((gl_VertexID & 1) == 1 ? 1.0 : -1.0, (gl_VertexID & 2) == 2 ? 1.0 : -1.0);
  gl_Position = vec4(clip, 0.0, 1.0);
}`;

export const FRAGMENT_SHADER = `#version 300 es
precision highp float;
precision highp sampler3D;
in vec2 clip;
out vec4 colour;
uniform mat4 clipToWorld, worldToAnatomy, worldToMap;
uniform vec3 eye, anatomyDims, mapDims;
uniform int steps;
uniform bool showMap;
uniform float threshold, opacity;
uniform sampler3D anatomy, mapTex;
uniform sampler2D lut;

void main() {
  vec4 far = clipToWorld * vec4(clip, 1.0, 1.0);
  vec3 dir = normalize(far.xyz / far.w - eye);
  // The anatomy box [-0.5, dims - 0.5] in its voxel space; the ray parameter s is in world mm.
  vec3 o = (worldToAnatomy * vec4(eye, 1.0)).xyz;
  vec3 d = mat3(worldToAnatomy) * dir;
  vec3 inv = 1.0 / d;
  vec3 t0 = (vec3(-0.5) - o) * inv;
  vec3 t1 = (anatomyDims - 0.5 - o) * inv;
  float near = max(max(min(t0.x, t1.x), min(t0.y, t1.y)), min(t0.z, t1.z));
  float far_ = min(min(max(t0.x, t1.x), max(t0.y, t1.y)), max(t0.z, t1.z));
  colour = vec4(0.0, 0.0, 0.0, 1.0);
  if (far_ <= max(near, 0.0)) return;
  near = max(near, 0.0);
  float ds = (far_ - near) / float(steps);
  float stepVoxels = length(d) * ds; // opacity per step scales with the voxels crossed
  vec4 acc = vec4(0.0);
  float peak = 0.0;
  float inFront = 0.0; // tissue opacity in front of the map's maximum
  for (int n = 0; n < 1024; n++) {
    if (n >= steps) break;
    float s = near + (float(n) + 0.5) * ds;
    vec3 v = o + d * s;
    float a = texture(anatomy, (v + 0.5) / anatomyDims).r;
    float alpha = smoothstep(0.1, 0.9, a) * 0.012 * stepVoxels;
    acc.rgb += (1.0 - acc.a) * alpha * vec3(0.25 + 0.75 * a);
    acc.a += (1.0 - acc.a) * alpha;
    if (showMap) {
      vec3 tm = ((worldToMap * vec4(eye + dir * s, 1.0)).xyz + 0.5) / mapDims;
      if (all(greaterThanEqual(tm, vec3(0.0))) && all(lessThanEqual(tm, vec3(1.0)))) {
        float value = texture(mapTex, tm).r;
        if (value > peak) {
          peak = value;
          inFront = acc.a;
        }
      }
    }
  }
  if (peak >= threshold) {
    float weight = opacity * (0.4 + 0.6 * peak) * (1.0 - 0.6 * inFront);
    acc.rgb = mix(acc.rgb, texture(lut, vec2(peak, 0.5)).rgb, clamp(weight * 1.6, 0.0, 1.0));
  }
  colour = vec4(acc.rgb, 1.0);
}`;

export function compileProgram(gl, vertexSource, fragmentSource) {
  const shader = (type, source) => {
    const s = gl.createShader(type);
    gl.shaderSource(s, source);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(`3D shader: ${gl.getShaderInfoLog(s)}`);
    return s;
  };
  const program = gl.createProgram();
  gl.attachShader(program, shader(gl.VERTEX_SHADER, vertexSource));
  gl.attachShader(program, shader(gl.FRAGMENT_SHADER, fragmentSource));
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(`3D program: ${gl.getProgramInfoLog(program)}`);
  return program;
}
