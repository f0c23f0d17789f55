// Small DOM helpers. Data goes into the page as text only (textContent),
// never as markup.

export const $ = (id) => document.getElementById(id);

// el makes an element with text and attributes (properties such as
// className, type, or dataset entries as data-*).
export function el(tag, text = '', attrs = {}) {
  const e = document.createElement(tag);
  if (text) e.textContent = text;
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  return e;
}

// row makes a table row of cells: strings become text cells, elements
// are put in a cell as they are.
export function row(cells, attrs = {}) {
  const tr = el('tr', '', attrs);
  for (const c of cells) {
    const td = el('td');
    if (c instanceof Node) td.append(c);
    else td.textContent = c;
    tr.append(td);
  }
  return tr;
}

// button makes a button that runs f when clicked, showing what f throws
// in the element errorId.
export function button(text, errorId, f, attrs = {}) {
  const b = el('button', text, { type: 'button', ...attrs });
  b.addEventListener('click', () => guard(errorId, b, f));
  return b;
}

// guard runs f with control (if any) disabled meanwhile, showing what it
// throws (the server's message) in the element errorId.
export async function guard(errorId, control, f) {
  const out = $(errorId);
  out.textContent = '';
  if (control) control.disabled = true;
  try {
    await f();
  } catch (e) {
    out.textContent = e.message;
  } finally {
    if (control) control.disabled = false;
  }
}

// onSubmit makes the form run f(form) instead of being sent, its
// errors shown in errorId.
export function onSubmit(formId, errorId, f) {
  const form = $(formId);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    guard(errorId, form.querySelector('button[type=submit]'), () => f(form));
  });
}

// when formats a protojson timestamp in the page's language.
export function when(ts, lang) {
  return ts ? new Date(ts).toLocaleString(lang) : '';
}
