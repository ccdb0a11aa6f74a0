// The view written into the URL: the page's own parameters stay, the view's are replaced.
import { test } from "node:test";
import assert from "node:assert/strict";

import { viewParams, withView } from "../../viewer/component/js/urlstate.js";
import { progressText } from "../../viewer/component/js/pending.js";

test("view parameters are short and round-trip through URLSearchParams", () => {
  const params = viewParams({ cross: [98, 116, 94], width: 1234.56789, level: -600, opacity: 0.456 });
  assert.deepEqual(params, { cross: "98,116,94", window: "1234.57,-600", opacity: "0.46" });
  const search = withView("?case=Sample+brain+MRI&method=HiResCAM", params);
  const back = new URLSearchParams(search);
  assert.equal(back.get("case"), "Sample brain MRI");
  assert.equal(back.get("method"), "HiResCAM");
  assert.equal(back.get("cross"), "98,116,94");
  assert.equal(back.get("window"), "1234.57,-600");
});

test("writing the view again replaces it rather than appending", () => {
  const first = withView("?model=x", viewParams({ cross: [1, 2, 3], width: 10, level: 5, opacity: 0.5 }));
  const second = withView(first, viewParams({ cross: [4, 5, 6], width: 10, level: 5, opacity: 0.5 }));
  assert.equal(new URLSearchParams(second).getAll("cross").length, 1);
  assert.equal(new URLSearchParams(second).get("cross"), "4,5,6");
  assert.equal(new URLSearchParams(second).get("model"), "x");
});

test("a pending map's line names the map asked for, as being computed", () => {
  assert.equal(progressText("HiResCAM · block2 · dark lesion", { stage: "forward", message: "" }),
    "computing HiResCAM · block2 · dark lesion: running the model (forward pass)…");
  assert.match(progressText("HiResCAM · x", { stage: "stopped", message: "" }), /stopped/);
});
