// Shows the copy buttons (hidden when scripts are off) and copies the named field's value.
for (const button of document.querySelectorAll('button[data-copy]')) {
  const field = document.getElementById(button.dataset.copy);
  if (field === null || navigator.clipboard === undefined) continue;

  button.hidden = false;
  button.addEventListener('click', async () => {
    await navigator.clipboard.writeText(field.value);
    button.textContent = 'Copied';
  });
}
