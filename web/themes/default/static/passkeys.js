// Passkeys (WebAuthn) on the Gatehouse pages, without a framework.
//
// The server speaks webauthn-rs JSON: binary fields are base64url strings. This
// turns its options into what navigator.credentials.create()/get() take, and the
// browser's credential back into JSON. Every call is a POST with the page's CSRF
// token in the X-CSRF-Token header. The pages work without this script: its parts
// stay hidden until it finds that the browser can use passkeys.
//
//   [data-passkey="sign-in"]        "Sign in with a passkey", and the autofill
//                                   (conditional UI) on the email field
//   [data-passkey="second-factor"]  "Use a passkey" after a password or for step-up
//   [data-passkey="register"]       the form that adds a passkey (security page)
//   [data-passkey="reset"]          the password-reset form, where a passkey proves
//                                   the reset: the assertion goes with the form
(function () {
  'use strict';

  const script = document.currentScript;
  const config = script ? script.dataset : {};
  const base = config.basePath || '';

  if (!window.PublicKeyCredential || !navigator.credentials) return;

  // ---- base64url <-> ArrayBuffer ----

  function toBuffer(value) {
    const base64 = value.replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = '';
    for (let i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  const descriptors = (list) => (list || []).map((item) => Object.assign({}, item, { id: toBuffer(item.id) }));

  function creationOptions(options) {
    const publicKey = Object.assign({}, options.publicKey);
    publicKey.challenge = toBuffer(publicKey.challenge);
    publicKey.user = Object.assign({}, publicKey.user, { id: toBuffer(publicKey.user.id) });
    if (publicKey.excludeCredentials) publicKey.excludeCredentials = descriptors(publicKey.excludeCredentials);
    return publicKey;
  }

  function requestOptions(options) {
    const publicKey = Object.assign({}, options.publicKey);
    publicKey.challenge = toBuffer(publicKey.challenge);
    if (publicKey.allowCredentials) publicKey.allowCredentials = descriptors(publicKey.allowCredentials);
    return publicKey;
  }

  function registrationJSON(credential) {
    const response = credential.response;
    const extensions = credential.getClientExtensionResults ? credential.getClientExtensionResults() : {};
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: toBase64url(response.clientDataJSON),
        attestationObject: toBase64url(response.attestationObject),
        transports: typeof response.getTransports === 'function' ? response.getTransports() : undefined,
      },
      // Only what the server reads; unsigned, informational.
      extensions: extensions.credProps ? { credProps: extensions.credProps } : {},
    };
  }

  function assertionJSON(credential) {
    const response = credential.response;
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: {
        authenticatorData: toBase64url(response.authenticatorData),
        clientDataJSON: toBase64url(response.clientDataJSON),
        signature: toBase64url(response.signature),
        userHandle: response.userHandle ? toBase64url(response.userHandle) : null,
      },
      extensions: {},
    };
  }

  // ---- talking to the server ----

  async function post(path, body) {
    const response = await fetch(base + path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': config.csrfToken || '' },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try {
      data = await response.json();
    } catch (_) {
      // Not JSON (a proxy's error page): the status says enough.
    }
    if (!response.ok) {
      const error = new Error(data.message || config.msgFailed || response.statusText);
      error.server = data;
      throw error;
    }
    return data;
  }

  // ---- messages ----

  function showError(block, error) {
    if (error && error.server && error.server.redirect) {
      window.location.assign(error.server.redirect);
      return;
    }
    let text = config.msgFailed || 'The passkey could not be used.';
    if (error && error.server && error.server.message) {
      text = error.server.message;
    } else if (error && (error.name === 'NotAllowedError' || error.name === 'AbortError')) {
      // Cancelled by the user, or timed out: the browser does not say which.
      text = config.msgCancelled || text;
    }
    let alert = block.querySelector('[data-passkey-error]');
    if (!alert) {
      alert = document.createElement('div');
      alert.className = 'gh-alert gh-alert--error';
      alert.setAttribute('role', 'alert');
      alert.setAttribute('data-passkey-error', '');
      block.insertBefore(alert, block.firstChild);
    }
    alert.textContent = text;
  }

  function clearError(block) {
    const alert = block.querySelector('[data-passkey-error]');
    if (alert) alert.remove();
  }

  // ---- ceremonies ----

  async function authenticate(prefix, block, signal, mediation) {
    const begun = await post(prefix + '/begin', mediation === 'conditional' ? { conditional: true } : {});
    const request = { publicKey: requestOptions(begun.options) };
    if (mediation) request.mediation = mediation;
    if (signal) request.signal = signal;
    const credential = await navigator.credentials.get(request);
    if (!credential) throw new Error(config.msgFailed);
    const finished = await post(prefix + '/finish', {
      challenge_id: begun.challenge_id,
      credential: assertionJSON(credential),
      return_to: block.dataset.returnTo || '',
    });
    window.location.assign(finished.redirect);
  }

  function setUpSignIn(block) {
    const button = block.querySelector('[data-passkey-start]');
    let conditional = null; // { controller, done } while the autofill request is pending

    async function startConditional() {
      if (!PublicKeyCredential.isConditionalMediationAvailable) return;
      if (!(await PublicKeyCredential.isConditionalMediationAvailable())) return;
      const controller = new AbortController();
      const done = authenticate('/signin/passkey', block, controller.signal, 'conditional').catch((error) => {
        if (!controller.signal.aborted && error.name !== 'AbortError') showError(block, error);
      });
      conditional = { controller, done };
    }

    button.addEventListener('click', async () => {
      clearError(block);
      button.disabled = true;
      try {
        // One WebAuthn request at a time: the autofill one gives way to the dialog.
        if (conditional) {
          conditional.controller.abort();
          await conditional.done;
          conditional = null;
        }
        await authenticate('/signin/passkey', block, null, null);
      } catch (error) {
        showError(block, error);
        button.disabled = false;
      }
    });

    block.hidden = false;
    startConditional().catch(() => {});
  }

  function setUpSecondFactor(block) {
    const button = block.querySelector('[data-passkey-start]');
    button.addEventListener('click', async () => {
      clearError(block);
      button.disabled = true;
      try {
        await authenticate('/signin/second-factor/passkey', block, null, null);
      } catch (error) {
        showError(block, error);
        button.disabled = false;
      }
    });
    block.hidden = false;
  }

  function showCodes(codes) {
    const panel = document.querySelector('[data-passkey-codes]');
    if (!panel) return false;
    const list = panel.querySelector('ul');
    list.textContent = '';
    for (const code of codes) {
      const item = document.createElement('li');
      const text = document.createElement('code');
      text.textContent = code;
      item.appendChild(text);
      list.appendChild(item);
    }
    panel.hidden = false;
    panel.scrollIntoView();
    const link = panel.querySelector('a');
    if (link) link.focus();
    return true;
  }

  function setUpRegistration(form) {
    const button = form.querySelector('button[type="submit"]');
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearError(form);
      button.disabled = true;
      try {
        const begun = await post('/account/passkeys/begin');
        const credential = await navigator.credentials.create({ publicKey: creationOptions(begun.options) });
        if (!credential) throw new Error(config.msgFailed);
        const name = form.querySelector('input[name="name"]');
        const finished = await post('/account/passkeys/finish', {
          challenge_id: begun.challenge_id,
          name: name ? name.value : '',
          credential: registrationJSON(credential),
        });
        if (finished.recovery_codes && finished.recovery_codes.length && showCodes(finished.recovery_codes)) {
          form.hidden = true;
          return;
        }
        window.location.assign(finished.redirect);
      } catch (error) {
        showError(form, error);
        button.disabled = false;
      }
    });
    form.hidden = false;
  }

  // The reset form: with the passkey chosen, submitting first runs the ceremony
  // (bound to the reset link), then sends the assertion with the new password.
  function setUpReset(form) {
    const radios = form.querySelectorAll('input[name="method"][type="radio"]');
    const chosen = () => {
      const checked = form.querySelector('input[name="method"]:checked') || form.querySelector('input[name="method"][type="hidden"]');
      return checked ? checked.value : '';
    };
    const code = form.querySelector('[data-proof-code]');
    const update = () => {
      if (!code) return;
      const usePasskey = chosen() === 'passkey';
      code.hidden = usePasskey;
      code.querySelector('input').required = !usePasskey;
    };
    for (const option of form.querySelectorAll('[data-passkey-option]')) option.hidden = false;
    for (const missing of form.querySelectorAll('[data-passkey-missing]')) missing.hidden = true;
    for (const radio of radios) {
      if (radio.value === 'passkey') {
        radio.disabled = false;
        radio.checked = true;
      }
      radio.addEventListener('change', update);
    }
    update();
    const button = form.querySelector('button[type="submit"]');
    form.addEventListener('submit', async (event) => {
      if (chosen() !== 'passkey') return;
      event.preventDefault();
      if (!form.reportValidity()) return;
      clearError(form);
      button.disabled = true;
      try {
        const begun = await post('/recover/passkey/begin', { token: form.dataset.token || '' });
        const credential = await navigator.credentials.get({ publicKey: requestOptions(begun.options) });
        if (!credential) throw new Error(config.msgFailed);
        form.querySelector('input[name="passkey_challenge"]').value = begun.challenge_id;
        form.querySelector('input[name="passkey_credential"]').value = JSON.stringify(assertionJSON(credential));
        form.submit();
      } catch (error) {
        showError(form, error);
        button.disabled = false;
      }
    });
  }

  for (const block of document.querySelectorAll('[data-passkey]')) {
    switch (block.dataset.passkey) {
      case 'sign-in':
        setUpSignIn(block);
        break;
      case 'second-factor':
        setUpSecondFactor(block);
        break;
      case 'register':
        setUpRegistration(block);
        break;
      case 'reset':
        setUpReset(block);
        break;
      default:
        break;
    }
  }
})();
