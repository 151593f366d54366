"""GLSL 3.30 sources of the OpenGL render backend (:mod:`hub.render.gl`): a full-screen triangle and the slab
fragment shader, which walks each pixel's samples through the volume texture and reduces them by max, min or
mean (the same sampling rules as :mod:`hub.render.kernels`), plus the uniform names the backend binds."""

VERTEX = """#version 330 core
void main() {  // one triangle covering the viewport, no vertex buffer
    vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
    gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}
"""

FRAGMENT = """#version 330 core
#define MODE %(mode)d
#define NEAREST %(nearest)d
uniform %(sampler)s vol;
uniform ivec3 size;  // (nx, ny, nz)
uniform vec3 origin;
uniform vec3 du;
uniform vec3 dv;
uniform vec3 dw;
uniform int samples;
uniform float fill;
out float result;

float texel(ivec3 p) { return float(texelFetch(vol, p, 0).r); }

float sample_at(vec3 q) {
    ivec3 hi = size - 1;
#if NEAREST
    return texel(clamp(ivec3(floor(q + 0.5)), ivec3(0), hi));
#else
    vec3 c = clamp(q, vec3(0.0), vec3(hi));
    vec3 f = floor(c);
    vec3 t = c - f;
    ivec3 a = ivec3(f);
    ivec3 b = min(a + 1, hi);
    float x00 = mix(texel(a), texel(ivec3(b.x, a.y, a.z)), t.x);
    float x10 = mix(texel(ivec3(a.x, b.y, a.z)), texel(ivec3(b.x, b.y, a.z)), t.x);
    float x01 = mix(texel(ivec3(a.x, a.y, b.z)), texel(ivec3(b.x, a.y, b.z)), t.x);
    float x11 = mix(texel(ivec3(a.x, b.y, b.z)), texel(b), t.x);
    return mix(mix(x00, x10, t.y), mix(x01, x11, t.y), t.z);
#endif
}

void main() {
    vec2 p = floor(gl_FragCoord.xy);  // (column, row): row 0 is the first row read back
    vec3 base = origin + p.x * du + p.y * dv;
    vec3 lo = vec3(-1.0e-3);
    vec3 top = vec3(size - 1) + 1.0e-3;
    float centre = 0.5 * float(samples - 1);
#if MODE == 0
    float acc = -3.0e38;
#elif MODE == 1
    float acc = 3.0e38;
#else
    float acc = 0.0;
#endif
    int hits = 0;
    for (int k = 0; k < samples; ++k) {
        vec3 q = base + (float(k) - centre) * dw;
        if (any(lessThan(q, lo)) || any(greaterThan(q, top))) continue;
        float s = sample_at(q);
#if MODE == 0
        acc = max(acc, s);
#elif MODE == 1
        acc = min(acc, s);
#else
        acc += s;
#endif
        hits += 1;
    }
#if MODE == 2
    acc /= float(max(hits, 1));
#endif
    result = hits == 0 ? fill : acc;
}
"""

MODES = {"mip": 0, "minip": 1, "avg": 2}
UNIFORMS = ("vol", "size", "origin", "du", "dv", "dw", "samples", "fill")
