/* kedai web-chat widget: one script tag on a seller's page,
 *   <script src="https://KEDAI/widget.js" data-kedai-shop="SHOP_ID" defer></script>
 * It opens a visitor session, sends the visitor's messages and shows the
 * conversation live (server-sent events read through fetch, so the session
 * token travels in a header, never in a URL). Every text is shown with
 * textContent: nothing a buyer, an agent or a model wrote is ever parsed
 * as HTML. */
(function () {
  'use strict';
  var script = document.currentScript;
  if (!script) { return; }
  var shop = script.getAttribute('data-kedai-shop');
  if (!shop) { return; }
  var base = new URL(script.src, window.location.href).origin;
  var storageKey = 'kedai-widget:' + shop;
  var session = null;
  var seen = {};
  var retryMs = 1000;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  var css = document.createElement('link');
  css.rel = 'stylesheet';
  css.href = base + '/widget.css';
  document.head.appendChild(css);

  var root = el('div', 'kd-widget');
  var panel = el('div', 'kd-panel');
  var header = el('div', 'kd-header', 'Chat with us');
  var status = el('div', 'kd-status', '');
  header.appendChild(status);
  var list = el('ul', 'kd-messages');
  list.setAttribute('aria-live', 'polite');
  var form = el('form', 'kd-form');
  var input = el('textarea', 'kd-input');
  input.setAttribute('rows', '1');
  input.setAttribute('maxlength', '2000');
  input.setAttribute('aria-label', 'Your message');
  input.setAttribute('placeholder', 'Type a message');
  var send = el('button', 'kd-send', 'Send');
  send.type = 'submit';
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(header);
  panel.appendChild(list);
  panel.appendChild(form);
  var launcher = el('button', 'kd-launcher', 'Chat');
  launcher.type = 'button';
  root.appendChild(panel);
  root.appendChild(launcher);
  document.body.appendChild(root);

  function show(message) {
    if (message.id && seen[message.id]) {
      if (seen[message.id].classList) { seen[message.id].classList.remove('kd-pending'); }
      return;
    }
    var item = el('li', 'kd-msg ' + (message.from === 'visitor' ? 'kd-visitor' : 'kd-shop'), message.text);
    if (message.pending) { item.classList.add('kd-pending'); }
    if (message.id) { seen[message.id] = item; }
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
  }

  function load() {
    try { return JSON.parse(window.localStorage.getItem(storageKey) || 'null'); } catch (e) { return null; }
  }
  function save(value) {
    try { window.localStorage.setItem(storageKey, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }

  function call(method, path, body) {
    var headers = { 'Content-Type': 'application/json' };
    if (session) { headers.Authorization = 'Bearer ' + session.token; }
    return fetch(base + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined });
  }

  function openSession() {
    session = load();
    if (session) { return Promise.resolve(session); }
    return call('POST', '/widget/v1/sessions', { shop: shop }).then(function (response) {
      if (!response.ok) { throw new Error('session ' + response.status); }
      return response.json();
    }).then(function (body) {
      session = { id: body.session, token: body.token };
      header.firstChild.textContent = 'Chat with ' + body.shop_name;
      save(session);
      return session;
    });
  }

  function listen() {
    status.textContent = 'connecting...';
    call('GET', '/widget/v1/events').then(function (response) {
      if (response.status === 401) {
        session = null;
        save(null);
        return openSession().then(listen);
      }
      if (!response.ok || !response.body) { throw new Error('events ' + response.status); }
      status.textContent = 'online';
      retryMs = 1000;
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = '';
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) { throw new Error('stream ended'); }
          buffer += decoder.decode(chunk.value, { stream: true });
          var events = buffer.split('\n\n');
          buffer = events.pop();
          events.forEach(function (block) {
            var data = block.split('\n').filter(function (line) {
              return line.indexOf('data:') === 0;
            }).map(function (line) { return line.slice(5).trim(); }).join('\n');
            if (data) {
              try { show(JSON.parse(data)); } catch (e) { /* not a message */ }
            }
          });
          return pump();
        });
      }
      return pump();
    }).catch(function () {
      status.textContent = 'reconnecting...';
      window.setTimeout(listen, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    });
  }

  function newId() {
    if (window.crypto && window.crypto.randomUUID) { return window.crypto.randomUUID(); }
    return String(Date.now()) + '-' + String(Math.random()).slice(2);
  }

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || !session) { return; }
    send.disabled = true;
    var clientId = newId();
    call('POST', '/widget/v1/messages', { text: text, client_id: clientId }).then(function (response) {
      if (!response.ok) { throw new Error('send ' + response.status); }
      return response.json();
    }).then(function (body) {
      input.value = '';
      show({ id: body.message_id, from: 'visitor', text: text, pending: false });
    }).catch(function () {
      status.textContent = 'not sent, please try again';
    }).then(function () {
      send.disabled = false;
    });
  });

  launcher.addEventListener('click', function () {
    var opening = !root.classList.contains('kd-open');
    root.classList.toggle('kd-open');
    if (opening && !session) {
      openSession().then(listen).catch(function () { status.textContent = 'chat unavailable'; });
    } else if (opening) {
      input.focus();
    }
  });

  if (load()) {
    openSession().then(listen);
  }
})();
