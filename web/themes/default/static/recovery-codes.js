// "Copy" and "Download" for the recovery codes page. A static file, loaded with the
// page's CSP nonce (inline scripts are not allowed). Without it the codes are still
// on the page to write down; the buttons stay hidden.
//
//   [data-recovery-codes]       the buttons' container, shown once this runs
//   [data-recovery-codes-list]  the list whose <code> elements are the codes
(function () {
  'use strict';

  const script = document.currentScript;
  const config = script ? script.dataset : {};
  const actions = document.querySelector('[data-recovery-codes]');
  const list = document.querySelector('[data-recovery-codes-list]');
  if (!actions || !list) return;

  const codes = () => Array.from(list.querySelectorAll('code'), (code) => code.textContent.trim());
  const text = () => `${config.heading || 'Recovery codes'}\n\n${codes().join('\n')}\n`;
  const status = actions.querySelector('[data-recovery-codes-status]');
  const say = (message) => {
    if (status) status.textContent = message || '';
  };

  const copy = actions.querySelector('[data-recovery-codes-copy]');
  if (copy && navigator.clipboard && window.isSecureContext) {
    copy.hidden = false;
    copy.addEventListener('click', () => {
      navigator.clipboard.writeText(text()).then(
        () => say(config.msgCopied),
        () => say(config.msgCopyFailed),
      );
    });
  }

  const download = actions.querySelector('[data-recovery-codes-download]');
  if (download) {
    download.hidden = false;
    download.addEventListener('click', () => {
      const url = URL.createObjectURL(new Blob([text()], { type: 'text/plain;charset=utf-8' }));
      const link = document.createElement('a');
      link.href = url;
      link.download = config.fileName || 'recovery-codes.txt';
      document.body.appendChild(link);
      link.click();
      link.remove();
      // Freed later, not at once: the browser reads the blob after the click returns.
      setTimeout(() => URL.revokeObjectURL(url), 30_000);
    });
  }

  actions.hidden = false;
})();
