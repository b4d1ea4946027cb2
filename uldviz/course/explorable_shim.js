// The static course's stand-in for a kernel's widget model: mounts every anywidget explorable of the page
// with its saved state. anywidget's render({model, el}) needs only get/set/on/off/save_changes (and send,
// which goes nowhere here); the module and its CSS are embedded in the page (base64), nothing is fetched.

function text(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page lacks ${id}`);
  const bytes = Uint8Array.from(atob(node.textContent.trim()), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

function shimModel(state) {
  const handlers = new Map();
  const emit = (name) => (handlers.get(name) || []).slice().forEach((cb) => cb());
  return {
    get: (key) => state[key],
    set(key, value) {
      const same = JSON.stringify(state[key]) === JSON.stringify(value);
      state[key] = value;
      if (!same) { emit(`change:${key}`); emit("change"); }
    },
    on(names, cb) {
      for (const name of names.split(/\s+/)) {
        if (!handlers.has(name)) handlers.set(name, []);
        handlers.get(name).push(cb);
      }
    },
    off(names, cb) {
      if (!names) { handlers.clear(); return; }
      for (const name of names.split(/\s+/)) {
        handlers.set(name, cb ? (handlers.get(name) || []).filter((f) => f !== cb) : []);
      }
    },
    save_changes() {},  // no kernel to save to
    send() {},
  };
}

const modules = new Map();
const styles = new Set();

function load(id) {
  if (!modules.has(id)) {
    const url = URL.createObjectURL(new Blob([text(`uldviz-esm-${id}`)], { type: "text/javascript" }));
    modules.set(id, import(url));
  }
  return modules.get(id);
}

async function mount(holder) {
  const { esm, css } = holder.dataset;
  if (css && !styles.has(css)) {
    styles.add(css);
    document.head.append(Object.assign(document.createElement("style"), { textContent: text(`uldviz-css-${css}`) }));
  }
  const state = JSON.parse(holder.querySelector("script.uldviz-explorable-state").textContent);
  state.static_page = true;
  const model = shimModel(state);
  let widget = (await load(esm)).default;
  if (typeof widget === "function") widget = await widget();
  if (widget.initialize) await widget.initialize({ model });
  const el = holder.querySelector(".uldviz-explorable-view");
  await widget.render({ model, el });
  holder.dataset.mounted = "true";
}

for (const holder of document.querySelectorAll(".uldviz-explorable")) {
  mount(holder).catch((err) => {
    holder.dataset.mounted = "error";
    holder.querySelector(".uldviz-explorable-view").textContent =
      `This explorable could not start in this browser (${err}). Open the notebook in Jupyter or Colab.`;
  });
}
